-- executive.summary: Sufficient statistics of the headline metrics per user reached in the period, for users outside the global holdout (exposed) and in it; outcomes from each user's first decision.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey, $pre_days
-- rendered with: pre_days=14
SELECT
  grp,
  COUNT(*) AS users,
  MIN(first_ts) AS first_ts,
  MAX(as_of) AS as_of,
  COUNT(v_arpu) AS arpu__n,
  CAST(COALESCE(SUM(v_arpu), 0) AS DOUBLE) AS arpu__sum,
  CAST(COALESCE(SUM(v_arpu * v_arpu), 0) AS DOUBLE) AS arpu__sum_squares,
  CAST(COALESCE(SUM(x_arpu), 0) AS DOUBLE) AS arpu__pre_sum,
  CAST(COALESCE(SUM(x_arpu * x_arpu), 0) AS DOUBLE) AS arpu__pre_sum_squares,
  CAST(COALESCE(SUM(v_arpu * x_arpu), 0) AS DOUBLE) AS arpu__sum_product,
  COUNT(v_margin_per_user) AS margin_per_user__n,
  CAST(COALESCE(SUM(v_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum,
  CAST(COALESCE(SUM(v_margin_per_user * v_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum_squares,
  CAST(COALESCE(SUM(x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__pre_sum,
  CAST(COALESCE(SUM(x_margin_per_user * x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__pre_sum_squares,
  CAST(COALESCE(SUM(v_margin_per_user * x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum_product,
  COUNT(v_conversion_rate) AS conversion_rate__n,
  CAST(COALESCE(SUM(v_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum,
  CAST(COALESCE(SUM(v_conversion_rate * v_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum_squares,
  CAST(COALESCE(SUM(x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__pre_sum,
  CAST(COALESCE(SUM(x_conversion_rate * x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__pre_sum_squares,
  CAST(COALESCE(SUM(v_conversion_rate * x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum_product,
  COUNT(v_aov) AS aov__n,
  CAST(COALESCE(SUM(v_aov), 0) AS DOUBLE) AS aov__sum,
  CAST(COALESCE(SUM(v_aov * v_aov), 0) AS DOUBLE) AS aov__sum_squares,
  CAST(COALESCE(SUM(d_aov), 0) AS DOUBLE) AS aov__denominator_sum,
  CAST(COALESCE(SUM(d_aov * d_aov), 0) AS DOUBLE) AS aov__denominator_sum_squares,
  CAST(COALESCE(SUM(v_aov * d_aov), 0) AS DOUBLE) AS aov__sum_product,
  COUNT(v_nps) AS nps__n,
  CAST(COALESCE(SUM(v_nps), 0) AS DOUBLE) AS nps__sum,
  CAST(COALESCE(SUM(v_nps * v_nps), 0) AS DOUBLE) AS nps__sum_squares,
  CAST(COALESCE(SUM(d_nps), 0) AS DOUBLE) AS nps__denominator_sum,
  CAST(COALESCE(SUM(d_nps * d_nps), 0) AS DOUBLE) AS nps__denominator_sum_squares,
  CAST(COALESCE(SUM(v_nps * d_nps), 0) AS DOUBLE) AS nps__sum_product,
  COUNT(v_coverage) AS coverage__n,
  CAST(COALESCE(SUM(v_coverage), 0) AS DOUBLE) AS coverage__sum,
  CAST(COALESCE(SUM(v_coverage * v_coverage), 0) AS DOUBLE) AS coverage__sum_squares
FROM (
  WITH units AS MATERIALIZED (
    SELECT
      HASH(uid) AS unit_no,
      *
    FROM (
      SELECT
        HASH(d.user_id) AS uid,
        MIN(d.ts) AS first_ts,
        CAST(NULL AS TEXT) AS placement,
        CASE
          WHEN BOOL_OR(CAST(d.arm = 'holdout' AS BOOLEAN))
          THEN 'holdout'
          ELSE 'exposed'
        END AS grp,
        COUNT(*) FILTER(WHERE
          (
            d.status = 'ok'
            AND NOT d.fallback
            AND d.policy IN ('rules', 'thompson', 'propensity')
          )) AS m_personalised__w0_end
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
      GROUP BY
        uid
    )
  ), as_of AS (
    SELECT
      LEAST(
        COALESCE($f_end, CAST('infinity' AS TIMESTAMPTZ)),
        COALESCE((
          SELECT
            MAX(ts)
          FROM events
        ), CAST(NOW() AS TIMESTAMPTZ)) + INTERVAL '1' MICROSECOND
      ) AS t
  ), facts AS (
    SELECT
      HASH(events.user_id) AS uid,
      ts,
      event_type,
      placement,
      revenue,
      margin,
      nps_score
    FROM events
    WHERE
      event_type IN ('nps_response', 'purchase', 'return')
  ), outcomes AS (
    SELECT
      u.unit_no,
      SUM(COALESCE(e.revenue, 0)) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts >= u.first_ts) AS m_revenue__w0_end,
      SUM(
        CASE
          WHEN e.event_type = 'purchase'
          THEN COALESCE(e.margin, 0)
          ELSE -ABS(COALESCE(e.margin, 0))
        END
      ) FILTER(WHERE
        e.event_type IN ('purchase', 'return') AND TRUE AND e.ts >= u.first_ts) AS m_net_margin__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts >= u.first_ts) AS m_orders__w0_end,
      SUM(CASE WHEN e.nps_score >= 9 THEN 100 WHEN e.nps_score <= 6 THEN -100 ELSE 0 END) FILTER(WHERE
        e.event_type IN ('nps_response')
        AND NOT e.nps_score IS NULL
        AND e.ts >= u.first_ts) AS m_nps_points__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('nps_response')
        AND NOT e.nps_score IS NULL
        AND e.ts >= u.first_ts) AS m_nps_responses__w0_end,
      SUM(COALESCE(e.revenue, 0)) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts < u.first_ts) AS m_revenue__pre,
      SUM(
        CASE
          WHEN e.event_type = 'purchase'
          THEN COALESCE(e.margin, 0)
          ELSE -ABS(COALESCE(e.margin, 0))
        END
      ) FILTER(WHERE
        e.event_type IN ('purchase', 'return') AND TRUE AND e.ts < u.first_ts) AS m_net_margin__pre,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts < u.first_ts) AS m_orders__pre
    FROM units AS u
    JOIN facts AS e
      ON e.uid = u.uid
      AND e.ts < (
        SELECT
          t
        FROM as_of
      )
      AND e.ts >= u.first_ts - TO_DAYS(CAST($pre_days AS INT))
    GROUP BY ALL
  )
  SELECT
    u.*
    EXCLUDE (unit_no),
    a.t AS as_of,
    COALESCE(o.m_revenue__w0_end, 0) AS v_arpu,
    COALESCE(o.m_revenue__pre, 0) AS x_arpu,
    COALESCE(o.m_net_margin__w0_end, 0) AS v_margin_per_user,
    COALESCE(o.m_net_margin__pre, 0) AS x_margin_per_user,
    CAST(COALESCE(o.m_orders__w0_end, 0) > 0 AS INT) AS v_conversion_rate,
    CAST(COALESCE(o.m_orders__pre, 0) > 0 AS INT) AS x_conversion_rate,
    COALESCE(o.m_revenue__w0_end, 0) AS v_aov,
    COALESCE(o.m_orders__w0_end, 0) AS d_aov,
    COALESCE(o.m_nps_points__w0_end, 0) AS v_nps,
    COALESCE(o.m_nps_responses__w0_end, 0) AS d_nps,
    CAST(COALESCE(u.m_personalised__w0_end, 0) > 0 AS INT) AS v_coverage
  FROM units AS u
  CROSS JOIN as_of AS a
  LEFT JOIN outcomes AS o
    USING (unit_no)
)
GROUP BY
  grp
