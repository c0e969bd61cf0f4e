-- compliance.parity: Per group of a dimension (segment, device, region): decisions, personalised decisions, decisions on a placement that can show an offer and those that showed one.
-- binds: $offer_placements, $offer_variants, $f_start, $f_end, $f_channel, $f_segment, $f_journey
-- rendered with: dimension='segment', offer_variants=('discount_10', 'discount_15'), offer_placements=('cart_recovery_offer',)
SELECT
  COALESCE(d.segment, 'unknown') AS grp,
  COUNT(*) AS decisions,
  COUNT(*) FILTER(WHERE
    (
      d.status = 'ok'
      AND NOT d.fallback
      AND d.policy IN ('rules', 'thompson', 'propensity')
    )) AS personalised,
  COUNT(*) FILTER(WHERE
    ARRAY_CONTAINS($offer_placements, d.placement)) AS offer_eligible,
  COUNT(*) FILTER(WHERE
    ARRAY_CONTAINS($offer_placements, d.placement)
    AND ARRAY_CONTAINS($offer_variants, d.variant)) AS offered
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
GROUP BY
  grp
ORDER BY
  grp
