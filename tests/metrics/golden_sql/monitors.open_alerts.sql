-- monitors.open_alerts: The alerts open now: each rule and subject whose newest change is a firing.
-- binds: nothing
SELECT
  rule,
  subject,
  ARG_MAX(kind, ts) AS kind,
  ARG_MAX(summary, ts) AS summary,
  ARG_MAX(action, ts) AS action,
  ARG_MAX(evidence, ts) AS evidence,
  MAX(ts) AS since
FROM alerts
GROUP BY
  rule,
  subject
HAVING
  ARG_MAX(state, ts) = 'firing'
ORDER BY
  since DESC,
  rule,
  subject
