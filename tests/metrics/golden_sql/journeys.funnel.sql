-- journeys.funnel: Decisions per journey and serving class (no consent, capped, holdout, blocked, fallback, personalised, fixed), with how many were exposed, clicked and led to a purchase.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
WITH d AS (
  SELECT
    HASH(d.decision_id) AS did,
    d.journey,
    HASH(d.decision_id) IN (
      SELECT
        HASH(x.decision_id)
      FROM exposures AS x
    ) AS seen,
    CASE
      WHEN NOT d.consent
      THEN 'no_consent'
      WHEN COALESCE(d.fallback_reason, '') = 'frequency_cap'
      THEN 'capped'
      WHEN d.arm = 'holdout'
      THEN 'holdout'
      WHEN NOT (
        d.arm <> 'holdout'
        AND d.consent
        AND NOT (
          d.fallback
          AND COALESCE(d.fallback_reason, '') IN (
            'no_consent',
            'frequency_cap',
            'bought_today',
            'out_of_stock',
            'channel_not_served',
            'experience_inactive'
          )
        )
      )
      THEN 'blocked'
      WHEN (
        d.fallback OR d.status <> 'ok'
      )
      THEN 'fallback'
      WHEN (
        d.status = 'ok'
        AND NOT d.fallback
        AND d.policy IN ('rules', 'thompson', 'propensity')
      )
      THEN 'model'
      ELSE 'fixed'
    END AS serving
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
), linked AS (
  SELECT
    HASH(decision_id) AS did,
    BOOL_OR(CAST(event_type IN ('click', 'email_click') AS BOOLEAN)) AS clicked,
    BOOL_OR(CAST(event_type = 'purchase' AS BOOLEAN)) AS converted
  FROM events
  WHERE
    NOT decision_id IS NULL AND event_type IN ('click', 'email_click', 'purchase')
  GROUP BY
    did
)
SELECT
  d.journey,
  d.serving,
  COUNT(*) AS decisions,
  COUNT(*) FILTER(WHERE
    d.seen) AS exposed,
  COUNT(*) FILTER(WHERE
    d.seen AND l.clicked) AS clicked,
  COUNT(*) FILTER(WHERE
    d.seen AND l.converted) AS converted
FROM d
LEFT JOIN linked AS l
  USING (did)
GROUP BY ALL
