-- health.events_over_time: Events per time bucket (by event time), from the rollups' hourly event counts.
-- binds: $bucket_s, $f_start, $f_end, $f_channel, $f_segment
-- rendered with: bucket_s=3600
SELECT
  MAKE_TIMESTAMPTZ(hour * 3600 // $bucket_s * $bucket_s * 1000000) AS bucket,
  CAST(SUM(events) AS BIGINT) AS events
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
  bucket
HAVING
  SUM(events) <> 0
ORDER BY
  bucket
