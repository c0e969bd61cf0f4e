-- compliance.audit: The newest decisions matching a decision id prefix, a user id prefix and a reason code.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $decision_id, $user_id, $reason, $limit
-- rendered with: search=AuditQuery(decision_id=None, user_id=None, reason=None, limit=200)
SELECT
  d.ts,
  d.decision_id,
  d.user_id,
  d.journey,
  d.placement,
  d.channel,
  d.experiment_id,
  d.arm,
  d.variant,
  d.policy,
  d.model_version,
  d.propensity,
  d.reasons,
  d.fallback,
  d.fallback_reason,
  d.status,
  d.error_code,
  d.latency_us,
  d.consent,
  d.segment,
  d.device,
  d.region
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
  AND (
    $decision_id IS NULL OR STARTS_WITH(d.decision_id, $decision_id)
  )
  AND (
    $user_id IS NULL OR STARTS_WITH(d.user_id, $user_id)
  )
  AND (
    $reason IS NULL
    OR ARRAY_CONTAINS(d.reasons, $reason)
    OR d.fallback_reason = $reason
    OR d.error_code = $reason
  )
ORDER BY
  d.ts DESC,
  d.decision_id
LIMIT $limit
