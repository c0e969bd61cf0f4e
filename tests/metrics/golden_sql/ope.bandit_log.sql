-- ope.bandit_log: One experience's decisions a policy chose, with their logged distributions, context and the decision's reward within the window.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $experience_id, $window_hours
-- rendered with: experience_id='home_showcase', reward='conversion', window_hours=24.0
WITH logged AS (
  SELECT
    d.decision_id,
    d.ts,
    d.variant,
    d.policy,
    d.propensity,
    d.action_probabilities,
    d.context,
    d.context_version
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
    AND d.experience_id = $experience_id
    AND NOT d.context IS NULL
    AND d.status = 'ok'
    AND NOT d.fallback
    AND d.ts <= (
      SELECT
        MAX(ts)
      FROM decisions
    ) - TO_SECONDS($window_hours * 3600.0)
), rewards AS (
  SELECT
    l.decision_id,
    MAX(CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END) AS reward
  FROM logged AS l
  JOIN events AS e
    ON e.decision_id = l.decision_id
  WHERE
    e.ts >= l.ts AND e.ts < l.ts + TO_SECONDS($window_hours * 3600.0)
  GROUP BY
    l.decision_id
)
SELECT
  l.*,
  CAST(COALESCE(r.reward, 0) AS DOUBLE) AS reward
FROM logged AS l
LEFT JOIN rewards AS r
  USING (decision_id)
ORDER BY
  l.ts,
  l.decision_id
