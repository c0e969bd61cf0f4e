-- health.summary: Decisions, latency percentiles, errors, fallbacks and decisions within the budget.
-- binds: $budget_us, $f_start, $f_end, $f_channel, $f_segment, $f_journey
-- rendered with: budget_ms=10.0
SELECT
  COUNT(*) AS decisions,
  MIN(d.ts) AS first_ts,
  MAX(d.ts) AS last_ts,
  QUANTILE_CONT(d.latency_us, [0.5, 0.95, 0.99]) AS q,
  COUNT(*) FILTER(WHERE
    d.status = 'error') AS errors,
  COUNT(*) FILTER(WHERE
    d.fallback) AS fallbacks,
  COUNT(*) FILTER(WHERE
    d.latency_us <= $budget_us) AS within_budget
FROM decisions AS d
WHERE
  (
    $f_start IS NULL OR d.ts >= $f_start
  )
  AND (
    $f_end IS NULL OR d.ts < $f_end
  )
  AND (
    $f_channel IS NULL OR d.channel = $f_channel
  )
  AND (
    $f_segment IS NULL OR d.segment = $f_segment
  )
  AND (
    $f_journey IS NULL OR d.journey = $f_journey
  )
