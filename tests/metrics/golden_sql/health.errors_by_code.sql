-- health.errors_by_code: Decisions that errored, by error code, and all filtered decisions.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
SELECT
  COALESCE(d.error_code, 'unknown') AS code,
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
  AND d.status = 'error'
GROUP BY
  code
ORDER BY
  decisions DESC,
  code
