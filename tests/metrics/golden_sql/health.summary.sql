-- health.summary: Decisions, latency percentiles, errors, fallbacks and decisions within the budget, from the rollups' hourly aggregates (health_ops, latency_histogram).
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $budget_us
-- rendered with: budget_ms=10.0
WITH ops AS (
  SELECT
    0 AS slot,
    CAST(SUM(decisions) AS BIGINT) AS decisions,
    CAST(COALESCE(SUM(decisions) FILTER(WHERE
      NOT error_code IS NULL), 0) AS BIGINT) AS errors,
    CAST(COALESCE(SUM(decisions) FILTER(WHERE
      NOT fallback_reason IS NULL), 0) AS BIGINT) AS fallbacks,
    MIN(hour) AS first_hour,
    MAX(hour) AS last_hour
  FROM health_ops
  WHERE
    (
      $f_start IS NULL OR hour >= EPOCH_US(CAST($f_start AS TIMESTAMPTZ)) // 3600000000
    )
    AND (
      $f_end IS NULL OR hour < EPOCH_US(CAST($f_end AS TIMESTAMPTZ)) // 3600000000
    )
    AND (
      $f_channel IS NULL OR channel = $f_channel
    )
    AND (
      $f_segment IS NULL OR segment = $f_segment
    )
    AND (
      $f_journey IS NULL OR journey = $f_journey
    )
    AND decisions <> 0
  GROUP BY
    slot
), hist AS (
  SELECT
    0 AS slot,
    latency_bucket AS b,
    SUM(decisions) AS n
  FROM latency_histogram
  WHERE
    (
      $f_start IS NULL OR hour >= EPOCH_US(CAST($f_start AS TIMESTAMPTZ)) // 3600000000
    )
    AND (
      $f_end IS NULL OR hour < EPOCH_US(CAST($f_end AS TIMESTAMPTZ)) // 3600000000
    )
    AND (
      $f_channel IS NULL OR channel = $f_channel
    )
    AND (
      $f_segment IS NULL OR segment = $f_segment
    )
    AND (
      $f_journey IS NULL OR journey = $f_journey
    )
    AND NOT latency_bucket IS NULL
  GROUP BY
    slot,
    b
  HAVING
    SUM(decisions) <> 0
), cum AS (
  SELECT
    slot,
    b,
    n,
    SUM(n) OVER (PARTITION BY slot ORDER BY b) AS c,
    SUM(n) OVER (PARTITION BY slot) AS total
  FROM hist
), p AS (
  SELECT
    slot,
    MIN(b) FILTER(WHERE
      c >= CEIL(0.5 * total - 1e-9)) AS b0,
    MIN(b) FILTER(WHERE
      c >= CEIL(0.95 * total - 1e-9)) AS b1,
    MIN(b) FILTER(WHERE
      c >= CEIL(0.99 * total - 1e-9)) AS b2,
    CAST(COALESCE(SUM(n) FILTER(WHERE
      b <= FLOOR(LOG(10, $budget_us) * 20 + 1e-9)), 0) AS BIGINT) AS within_budget
  FROM cum
  GROUP BY
    slot
)
SELECT
  o.slot,
  o.decisions,
  o.first_hour,
  o.last_hour,
  CASE
    WHEN NOT p.b0 IS NULL
    THEN [
      CASE WHEN p.b0 = 0 THEN 1.0 ELSE POWER(10, (
        p.b0 - 0.5
      ) / 20) END,
      CASE WHEN p.b1 = 0 THEN 1.0 ELSE POWER(10, (
        p.b1 - 0.5
      ) / 20) END,
      CASE WHEN p.b2 = 0 THEN 1.0 ELSE POWER(10, (
        p.b2 - 0.5
      ) / 20) END
    ]
  END AS q,
  o.errors,
  o.fallbacks,
  COALESCE(p.within_budget, 0) AS within_budget
FROM ops AS o
LEFT JOIN p
  USING (slot)
ORDER BY
  o.slot
