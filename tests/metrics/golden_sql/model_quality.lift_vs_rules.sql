-- model_quality.lift_vs_rules: Per placement the model serves: mature decisions driven by the model and by static rules, and how many led to the outcome.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $maturity_minutes, $event_types
-- rendered with: outcome='conversion', maturity_minutes=30.0
WITH mature AS (
  SELECT
    d.*
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
    AND d.status = 'ok'
    AND NOT d.fallback
    AND d.arm <> 'holdout'
    AND d.ts <= (
      SELECT
        MAX(ts)
      FROM decisions
    ) - TO_SECONDS($maturity_minutes * 60.0)
), outcomes AS (
  SELECT DISTINCT
    decision_id
  FROM events
  WHERE
    NOT decision_id IS NULL AND ARRAY_CONTAINS($event_types, event_type)
), modelled AS (
  SELECT DISTINCT
    placement
  FROM mature
  WHERE
    policy = 'propensity'
)
SELECT
  m.placement,
  CASE WHEN m.policy = 'propensity' THEN 'model' ELSE 'rules' END AS driver,
  COUNT(*) AS decisions,
  COUNT(o.decision_id) AS outcomes
FROM mature AS m
LEFT JOIN outcomes AS o
  USING (decision_id)
WHERE
  m.placement IN (
    SELECT
      placement
    FROM modelled
  )
  AND (
    m.policy = 'propensity' OR m.policy IN ('rules', 'fixed', 'default')
  )
GROUP BY ALL
ORDER BY
  m.placement,
  driver
