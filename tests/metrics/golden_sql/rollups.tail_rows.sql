-- rollups.tail_rows: How many raw rows were loaded after the newest run's watermark (the live tail).
-- binds: $events_w, $exposures_w, $decisions_w
-- rendered with: events_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), decisions_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), exposures_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), erasures_w=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc)
SELECT
  (
    SELECT
      COUNT(*)
    FROM (
      SELECT
        *
      FROM events
      WHERE
        loaded_at > $events_w
    )
  ) + (
    SELECT
      COUNT(*)
    FROM (
      SELECT
        *
      FROM exposures
      WHERE
        loaded_at > $exposures_w
    )
  ) + (
    SELECT
      COUNT(*)
    FROM (
      SELECT
        *
      FROM decisions
      WHERE
        loaded_at > $decisions_w
    )
  ) AS tail_rows
