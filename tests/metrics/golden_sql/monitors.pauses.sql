-- monitors.pauses: Each experiment arm's newest pause or resume: its state, who changed it, why and when.
-- binds: nothing
SELECT
  experiment_id,
  arm,
  ARG_MAX(action, ts) AS action,
  ARG_MAX(actor, ts) AS actor,
  ARG_MAX(rule, ts) AS rule,
  ARG_MAX(reason, ts) AS reason,
  MAX(ts) AS ts
FROM arm_pauses
GROUP BY
  experiment_id,
  arm
ORDER BY
  experiment_id,
  arm
