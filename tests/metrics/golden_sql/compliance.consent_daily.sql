-- compliance.consent_daily: Per UTC day: decisions, consented decisions, consent withdrawals and opt-outs, from the rollups' hourly aggregates (health_ops, event_counts).
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
WITH dd AS (
  SELECT
    hour // 24 AS day_number,
    SUM(decisions) AS decisions,
    SUM(consented) AS consented
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
  GROUP BY
    day_number
  HAVING
    SUM(decisions) <> 0
), ee AS (
  SELECT
    hour // 24 AS day_number,
    SUM(withdrawals) AS withdrawals,
    SUM(opt_outs) AS opt_outs
  FROM event_counts
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
  GROUP BY
    day_number
  HAVING
    SUM(consent_events) <> 0
)
SELECT
  CAST('1970-01-01' AS DATE) + CAST(day_number AS INT) AS day,
  CAST(COALESCE(dd.decisions, 0) AS BIGINT) AS decisions,
  CAST(COALESCE(dd.consented, 0) AS BIGINT) AS consented,
  CAST(COALESCE(ee.withdrawals, 0) AS BIGINT) AS withdrawals,
  CAST(COALESCE(ee.opt_outs, 0) AS BIGINT) AS opt_outs
FROM dd
FULL OUTER JOIN ee
  USING (day_number)
ORDER BY
  day
