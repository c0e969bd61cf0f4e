-- health.fallbacks_by_reason: Decisions served the default, by reason, and all filtered decisions.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
SELECT
  COALESCE(d.fallback_reason, 'unknown') AS code,
  COUNT(*) AS decisions,
  (
    SELECT
      COUNT(*)
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
  ) AS total
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
  AND d.fallback
GROUP BY
  code
ORDER BY
  decisions DESC,
  code
