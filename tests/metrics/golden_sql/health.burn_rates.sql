-- health.burn_rates: Decisions and decisions within the budget over the last 1 h, 6 h and 24 h of decisions.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $budget_us
-- rendered with: budget_ms=10.0
WITH f AS (
  SELECT
    d.ts,
    d.latency_us
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
), newest AS (
  SELECT
    MAX(ts) AS ts
  FROM f
)
SELECT
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(3600)) AS n_0,
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(3600) AND f.latency_us <= $budget_us) AS good_0,
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(21600)) AS n_1,
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(21600) AND f.latency_us <= $budget_us) AS good_1,
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(86400)) AS n_2,
  COUNT(*) FILTER(WHERE
    f.ts > newest.ts - TO_SECONDS(86400) AND f.latency_us <= $budget_us) AS good_2
FROM f, newest
