-- journeys.funnel: Decisions per journey and serving class (no consent, capped, holdout, blocked, fallback, personalised, fixed), with how many were exposed, clicked and led to a purchase: read from the rollups (journey_funnel: counts per UTC day of the decision, journey, channel, segment and class).
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
SELECT
  journey,
  serving,
  CAST(SUM(decisions) AS BIGINT) AS decisions,
  CAST(SUM(exposed) AS BIGINT) AS exposed,
  CAST(SUM(clicked) AS BIGINT) AS clicked,
  CAST(SUM(converted) AS BIGINT) AS converted
FROM journey_funnel
WHERE
  (
    $f_start IS NULL
    OR day >= CAST(EPOCH_US(CAST($f_start AS TIMESTAMPTZ)) // 86400000000 AS INT)
  )
  AND (
    $f_end IS NULL
    OR day < CAST(EPOCH_US(CAST($f_end AS TIMESTAMPTZ)) // 86400000000 AS INT)
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
  journey,
  serving
HAVING
  SUM(decisions) <> 0
ORDER BY
  journey,
  serving
