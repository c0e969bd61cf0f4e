-- health.events_over_time: Events per time bucket (by event time).
-- binds: $bucket_s, $f_start, $f_end, $f_channel, $f_segment
-- rendered with: bucket_s=3600
SELECT
  MAKE_TIMESTAMPTZ(
    EPOCH_US(e.ts) // (
      CAST($bucket_s AS BIGINT) * 1000000
    ) * (
      CAST($bucket_s AS BIGINT) * 1000000
    )
  ) AS bucket,
  COUNT(*) AS events
FROM events AS e
WHERE
  (
    $f_start IS NULL OR e.ts >= $f_start
  )
  AND (
    $f_end IS NULL OR e.ts < $f_end
  )
  AND (
    $f_channel IS NULL OR e.channel = $f_channel
  )
  AND (
    $f_segment IS NULL OR e.segment = $f_segment
  )
GROUP BY
  bucket
ORDER BY
  bucket
