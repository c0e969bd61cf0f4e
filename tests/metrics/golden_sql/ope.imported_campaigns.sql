-- ope.imported_campaigns: Campaigns imported from another system's bandit logs (`momento import bandit-log`), with their variants.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $journey
SELECT
  d.experience_id,
  ARRAY_AGG(DISTINCT d.variant ORDER BY d.variant) AS variants,
  COUNT(*) AS decisions
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
  AND d.journey = $journey
GROUP BY
  d.experience_id
ORDER BY
  d.experience_id
