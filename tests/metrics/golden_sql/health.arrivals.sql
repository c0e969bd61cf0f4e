-- health.arrivals: When each decision (by decision time) and event (by arrival) of the newest window was made.
-- binds: $until, $decisions_from, $window_s, $events_from
-- rendered with: window_s=60.0, decisions_from=datetime.datetime(2026, 6, 13, 1, 59, tzinfo=datetime.timezone.utc), events_from=datetime.datetime(2026, 6, 13, 1, 59, tzinfo=datetime.timezone.utc)
SELECT
  'decisions' AS stream,
  ts AS "at"
FROM decisions
WHERE
  ts > COALESCE(
    $until,
    (
      SELECT
        MAX(ts)
      FROM decisions
      WHERE
        ts >= COALESCE($decisions_from, CAST('-infinity' AS TIMESTAMPTZ))
    )
  ) - TO_SECONDS($window_s)
  AND (
    NOT $until IS NULL
    OR ts >= COALESCE($decisions_from, CAST('-infinity' AS TIMESTAMPTZ)) - TO_SECONDS($window_s)
  )
  AND (
    $until IS NULL OR ts <= $until
  )
UNION ALL
SELECT
  'events' AS stream,
  received_at AS "at"
FROM events
WHERE
  received_at > COALESCE(
    $until,
    (
      SELECT
        MAX(received_at)
      FROM events
      WHERE
        received_at >= COALESCE($events_from, CAST('-infinity' AS TIMESTAMPTZ))
    )
  ) - TO_SECONDS($window_s)
  AND (
    NOT $until IS NULL
    OR received_at >= COALESCE($events_from, CAST('-infinity' AS TIMESTAMPTZ)) - TO_SECONDS($window_s)
  )
  AND (
    $until IS NULL OR received_at <= $until
  )
