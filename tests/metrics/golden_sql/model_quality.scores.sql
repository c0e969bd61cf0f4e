-- model_quality.scores: The newest mature propensity-model decisions: placement, the model's score, and whether the outcome followed.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $maturity_minutes, $event_types, $limit
-- rendered with: outcome='conversion', maturity_minutes=30.0, limit=200000
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
), scored AS (
  SELECT
    decision_id,
    ts,
    placement,
    score
  FROM mature
  WHERE
    policy = 'propensity' AND NOT score IS NULL
  ORDER BY
    ts DESC
  LIMIT $limit
)
SELECT
  s.placement,
  s.score,
  (
    NOT o.decision_id IS NULL
  ) AS outcome
FROM scored AS s
LEFT JOIN outcomes AS o
  USING (decision_id)
