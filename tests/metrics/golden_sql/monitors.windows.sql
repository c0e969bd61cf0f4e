-- monitors.windows: Decisions over each monitor window ending now: within the latency budget, errored, fallen back for an engine failure, and personalised without consent.
-- binds: $budget_us, $failures, $windows, $now
-- rendered with: windows=[300, 3600], now=datetime.datetime(2026, 6, 12, 12, 0, tzinfo=datetime.timezone.utc), budget_ms=10.0
SELECT
  w.window_s,
  COUNT(d.decision_id) AS decisions,
  COUNT(d.decision_id) FILTER(WHERE
    d.latency_us <= $budget_us) AS within_budget,
  COUNT(d.decision_id) FILTER(WHERE
    d.status = 'error') AS errors,
  COUNT(d.decision_id) FILTER(WHERE
    d.fallback AND ARRAY_CONTAINS($failures, d.fallback_reason)) AS failure_fallbacks,
  COUNT(d.decision_id) FILTER(WHERE
    NOT d.consent AND d.policy <> 'default') AS consent_violations
FROM (
  SELECT
    UNNEST($windows) AS window_s
) AS w
LEFT JOIN decisions AS d
  ON d.ts > $now - TO_SECONDS(w.window_s) AND d.ts <= $now
GROUP BY
  w.window_s
ORDER BY
  w.window_s
