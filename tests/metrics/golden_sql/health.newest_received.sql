-- health.newest_received: When the newest event reached the lake.
-- binds: $events_from
-- rendered with: decisions_from=datetime.datetime(2026, 6, 13, 1, 59, tzinfo=datetime.timezone.utc), events_from=datetime.datetime(2026, 6, 13, 1, 59, tzinfo=datetime.timezone.utc)
SELECT
  MAX(received_at)
FROM events
WHERE
  received_at >= COALESCE($events_from, CAST('-infinity' AS TIMESTAMPTZ))
