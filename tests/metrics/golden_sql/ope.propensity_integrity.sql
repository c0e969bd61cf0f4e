-- ope.propensity_integrity: Per experience, the decisions a policy chose and those whose logged propensities cannot be trusted.
-- binds: $experience_ids, $experience_actions, $f_start, $f_end, $f_channel, $f_segment, $f_journey, $tolerance, $floor
-- rendered with: experiences=(('home_showcase', ('editorial', 'style_affinity', 'price_band_match', 'gift_guide')),)
WITH declared AS (
  SELECT
    UNNEST($experience_ids) AS experience_id,
    UNNEST($experience_actions) AS actions
), logged AS (
  SELECT
    x.experience_id,
    d.propensity AS p,
    COALESCE(LIST_POSITION(x.actions, d.variant), 0) - 1 AS a,
    CASE
      WHEN NOT d.action_probabilities IS NULL
      THEN LIST_TRANSFORM(
        x.actions,
        LAMBDA v : CASE
          WHEN LENGTH(LIST_FILTER(d.action_probabilities, LAMBDA e : e.variant = v)) = 0
          THEN 0.0
          ELSE COALESCE(
            LIST_FILTER(d.action_probabilities, LAMBDA e : e.variant = v)[-1].p,
            CAST('NaN' AS DOUBLE)
          )
        END
      )
    END AS probs
  FROM decisions AS d
  JOIN declared AS x
    ON d.experience_id = x.experience_id
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
    AND NOT d.context IS NULL
    AND d.status = 'ok'
    AND NOT d.fallback
), known AS (
  SELECT
    *,
    NOT probs IS NULL
    AND NOT LIST_BOOL_AND(LIST_TRANSFORM(probs, LAMBDA q : ISNAN(q))) AS known,
    a >= 0 AS inside,
    LIST_BOOL_OR(LIST_TRANSFORM(probs, LAMBDA q : NOT (
      q >= 0 AND q <= 1
    ))) AS bad_entry
  FROM logged
), flagged AS (
  SELECT
    experience_id,
    known,
    probs[CASE WHEN inside THEN a + 1 ELSE 1 END] AS chosen,
    p,
    inside,
    NOT COALESCE(p >= 0 AND p <= 1, FALSE) OR NOT inside OR (
      known AND bad_entry
    ) AS malformed,
    known AND NOT bad_entry AND ABS(LIST_SUM(probs) - 1.0) > $tolerance AS summing,
    CASE
      WHEN known
      THEN LIST_BOOL_OR(LIST_TRANSFORM(probs, LAMBDA q : q > 0 AND q < $floor))
      ELSE COALESCE(p > 0 AND p < $floor, FALSE)
    END AS below
  FROM known
), counted AS (
  SELECT
    *,
    COALESCE(p = 0, FALSE) OR (
      known AND inside AND chosen = 0
    ) AS zero,
    known AND inside AND NOT malformed AND ABS(chosen - p) > $tolerance AS mismatched
  FROM flagged
)
SELECT
  experience_id,
  COUNT(*) AS rows,
  COUNT(*) FILTER(WHERE
    NOT known) AS unknown,
  COUNT(*) FILTER(WHERE
    malformed) AS malformed,
  COUNT(*) FILTER(WHERE
    summing) AS not_summing_to_one,
  COUNT(*) FILTER(WHERE
    zero) AS chosen_zero,
  COUNT(*) FILTER(WHERE
    mismatched) AS mismatched,
  COUNT(*) FILTER(WHERE
    below) AS below_floor,
  COUNT(*) FILTER(WHERE
    malformed OR summing OR zero OR mismatched) AS problems,
  CAST($floor AS DOUBLE) AS floor
FROM counted
GROUP BY
  experience_id
ORDER BY
  LIST_POSITION($experience_ids, experience_id)
