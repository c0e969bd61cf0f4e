-- monitors.model_windows: The propensity model's mature decisions of the last recent_s and of the reference_s before: score and whether the outcome followed.
-- binds: $event_types, $mature_until, $recent_s, $reference_s
-- rendered with: rule=ModelHealth(name='model_health', action='alert', experiments=(), kind='model_health', outcome='click', recent_s=3600, reference_s=86400, maturity_minutes=30.0, max_auc_drop=0.05, max_calibration_drift=0.05, z=3.0, min_decisions=500, min_outcomes=20), now=datetime.datetime(2026, 6, 12, 12, 0, tzinfo=datetime.timezone.utc)
WITH outcomes AS (
  SELECT DISTINCT
    decision_id
  FROM events
  WHERE
    NOT decision_id IS NULL AND ARRAY_CONTAINS($event_types, event_type)
)
SELECT
  CASE
    WHEN d.ts > $mature_until - TO_SECONDS($recent_s)
    THEN 'recent'
    ELSE 'reference'
  END AS "window",
  d.score,
  (
    NOT o.decision_id IS NULL
  ) AS outcome
FROM decisions AS d
LEFT JOIN outcomes AS o
  USING (decision_id)
WHERE
  d.policy = 'propensity'
  AND NOT d.score IS NULL
  AND d.status = 'ok'
  AND NOT d.fallback
  AND d.arm <> 'holdout'
  AND d.ts > $mature_until - TO_SECONDS($recent_s + $reference_s)
  AND d.ts <= $mature_until
