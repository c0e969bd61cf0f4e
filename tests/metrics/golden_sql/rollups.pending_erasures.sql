-- rollups.pending_erasures: Erasures logged after the newest run (the rollups still hold those users: the numbers come from raw rows until the job has removed them).
-- binds: $erasures_w
-- rendered with: events_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), decisions_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), exposures_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), erasures_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc)
SELECT
  COUNT(*) AS pending
FROM erasures
WHERE
  loaded_at > $erasures_w
