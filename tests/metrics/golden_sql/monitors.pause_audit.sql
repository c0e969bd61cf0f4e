-- monitors.pause_audit: Every pause and resume of an experiment arm, newest first: who or which rule, why, on what evidence.
-- binds: $experiment, $limit
-- rendered with: limit=200
SELECT
  ts,
  experiment_id,
  arm,
  action,
  actor,
  rule,
  reason,
  evidence
FROM arm_pauses
WHERE
  $experiment IS NULL OR experiment_id = $experiment
ORDER BY
  ts DESC
LIMIT $limit
