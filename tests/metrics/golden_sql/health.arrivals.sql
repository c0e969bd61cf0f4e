-- health.arrivals: When each decision (by decision time) and event (by arrival) of the newest window was made.
-- binds: $until, $window_s
-- rendered with: window_s=60.0
SELECT
  'decisions' AS stream,
  ts AS "at"
FROM decisions
WHERE
  ts > COALESCE($until, (
    SELECT
      MAX(ts)
    FROM decisions
  )) - TO_SECONDS($window_s)
  AND (
    $until IS NULL OR ts <= $until
  )
UNION ALL
SELECT
  'events' AS stream,
  received_at AS "at"
FROM events
WHERE
  received_at > COALESCE($until, (
    SELECT
      MAX(received_at)
    FROM events
  )) - TO_SECONDS($window_s)
  AND (
    $until IS NULL OR received_at <= $until
  )
