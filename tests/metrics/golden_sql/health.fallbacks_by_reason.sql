-- health.fallbacks_by_reason: Decisions served the default, by reason, and all filtered decisions.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
SELECT
  fallback_reason AS code,
  CAST(SUM(decisions) AS BIGINT) AS decisions,
  (
    SELECT
      CAST(SUM(decisions) AS BIGINT)
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
  ) AS total
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
  AND NOT fallback_reason IS NULL
GROUP BY
  code
HAVING
  SUM(decisions) <> 0
ORDER BY
  decisions DESC,
  code
