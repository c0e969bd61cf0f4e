-- health.burn_rates: Decisions and decisions within the budget over the last 1, 6 and 24 whole hours of decisions, from the rollups' latency histogram.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $budget_us
-- rendered with: budget_ms=10.0
WITH newest AS (
  SELECT
    MAX(hour) AS newest_hour
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
), h AS (
  SELECT
    hour,
    latency_bucket,
    decisions
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
    AND hour > (
      SELECT
        newest_hour
      FROM newest
    ) - 24
)
SELECT
  CAST(COALESCE(SUM(decisions) FILTER(WHERE
    hour > newest_hour - 1), 0) AS BIGINT) AS n_0,
  CAST(COALESCE(
    SUM(decisions) FILTER(WHERE
      hour > newest_hour - 1
      AND latency_bucket <= FLOOR(LOG(10, $budget_us) * 20 + 1e-9)),
    0
  ) AS BIGINT) AS good_0,
  CAST(COALESCE(SUM(decisions) FILTER(WHERE
    hour > newest_hour - 6), 0) AS BIGINT) AS n_1,
  CAST(COALESCE(
    SUM(decisions) FILTER(WHERE
      hour > newest_hour - 6
      AND latency_bucket <= FLOOR(LOG(10, $budget_us) * 20 + 1e-9)),
    0
  ) AS BIGINT) AS good_1,
  CAST(COALESCE(SUM(decisions) FILTER(WHERE
    hour > newest_hour - 24), 0) AS BIGINT) AS n_2,
  CAST(COALESCE(
    SUM(decisions) FILTER(WHERE
      hour > newest_hour - 24
      AND latency_bucket <= FLOOR(LOG(10, $budget_us) * 20 + 1e-9)),
    0
  ) AS BIGINT) AS good_2
FROM newest
LEFT JOIN h
  ON TRUE
