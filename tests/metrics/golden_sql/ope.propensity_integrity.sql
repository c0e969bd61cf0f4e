-- ope.propensity_integrity: Every decision a policy chose: its experience, chosen variant, logged propensity and logged distribution.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
SELECT
  d.experience_id,
  d.variant,
  d.propensity,
  d.action_probabilities
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
  AND NOT d.context IS NULL
  AND d.status = 'ok'
  AND NOT d.fallback
ORDER BY
  d.experience_id
