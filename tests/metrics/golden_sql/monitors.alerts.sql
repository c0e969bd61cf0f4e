-- monitors.alerts: The newest alert changes (firing and resolved), newest first.
-- binds: $limit
-- rendered with: limit=200
SELECT
  ts,
  rule,
  kind,
  subject,
  state,
  summary,
  action,
  evidence,
  alert_id
FROM alerts
ORDER BY
  ts DESC,
  alert_id
LIMIT $limit
