-- compliance.saturation: How many user-days saw each number of exposures, per channel.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
WITH per AS (
  SELECT
    x.channel,
    COUNT(*) AS n
  FROM exposures AS x
  WHERE
    (
      $f_start IS NULL OR x.ts >= $f_start
    )
    AND (
      $f_end IS NULL OR x.ts < $f_end
    )
    AND (
      $f_channel IS NULL OR x.channel = $f_channel
    )
    AND $f_segment IS NULL
    AND $f_journey IS NULL
  GROUP BY
    x.channel,
    HASH(
      x.user_id,
      (
        CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(x.ts) // 86400000000 AS INT)
      )
    )
)
SELECT
  channel,
  n AS exposures,
  COUNT(*) AS user_days
FROM per
GROUP BY ALL
ORDER BY
  channel,
  exposures
