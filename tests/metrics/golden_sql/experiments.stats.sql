-- experiments.stats: Sufficient statistics of each metric per experiment, arm, segment and UTC day of first exposure: the users exposed in the experiment, their outcomes after the first exposure and, for CUPED, before it.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $pre_days
-- rendered with: pre_days=14, metric_names=('conversion_rate', 'revenue_per_user', 'aov', 'ctr', 'margin_per_user', 'return_rate', 'retention_7d', 'opt_out_rate', 'nps')
SELECT
  experiment_id,
  arm,
  segment,
  (
    CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(first_ts) // 86400000000 AS INT)
  ) AS day,
  COUNT(*) AS exposed__users,
  COUNT(v_conversion_rate) AS conversion_rate__n,
  CAST(COALESCE(SUM(v_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum,
  CAST(COALESCE(SUM(v_conversion_rate * v_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum_squares,
  CAST(COALESCE(SUM(x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__pre_sum,
  CAST(COALESCE(SUM(x_conversion_rate * x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__pre_sum_squares,
  CAST(COALESCE(SUM(v_conversion_rate * x_conversion_rate), 0) AS DOUBLE) AS conversion_rate__sum_product,
  COUNT(v_revenue_per_user) AS revenue_per_user__n,
  CAST(COALESCE(SUM(v_revenue_per_user), 0) AS DOUBLE) AS revenue_per_user__sum,
  CAST(COALESCE(SUM(v_revenue_per_user * v_revenue_per_user), 0) AS DOUBLE) AS revenue_per_user__sum_squares,
  CAST(COALESCE(SUM(x_revenue_per_user), 0) AS DOUBLE) AS revenue_per_user__pre_sum,
  CAST(COALESCE(SUM(x_revenue_per_user * x_revenue_per_user), 0) AS DOUBLE) AS revenue_per_user__pre_sum_squares,
  CAST(COALESCE(SUM(v_revenue_per_user * x_revenue_per_user), 0) AS DOUBLE) AS revenue_per_user__sum_product,
  COUNT(v_aov) AS aov__n,
  CAST(COALESCE(SUM(v_aov), 0) AS DOUBLE) AS aov__sum,
  CAST(COALESCE(SUM(v_aov * v_aov), 0) AS DOUBLE) AS aov__sum_squares,
  CAST(COALESCE(SUM(d_aov), 0) AS DOUBLE) AS aov__denominator_sum,
  CAST(COALESCE(SUM(d_aov * d_aov), 0) AS DOUBLE) AS aov__denominator_sum_squares,
  CAST(COALESCE(SUM(v_aov * d_aov), 0) AS DOUBLE) AS aov__sum_product,
  COUNT(v_ctr) AS ctr__n,
  CAST(COALESCE(SUM(v_ctr), 0) AS DOUBLE) AS ctr__sum,
  CAST(COALESCE(SUM(v_ctr * v_ctr), 0) AS DOUBLE) AS ctr__sum_squares,
  CAST(COALESCE(SUM(d_ctr), 0) AS DOUBLE) AS ctr__denominator_sum,
  CAST(COALESCE(SUM(d_ctr * d_ctr), 0) AS DOUBLE) AS ctr__denominator_sum_squares,
  CAST(COALESCE(SUM(v_ctr * d_ctr), 0) AS DOUBLE) AS ctr__sum_product,
  COUNT(v_margin_per_user) AS margin_per_user__n,
  CAST(COALESCE(SUM(v_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum,
  CAST(COALESCE(SUM(v_margin_per_user * v_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum_squares,
  CAST(COALESCE(SUM(x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__pre_sum,
  CAST(COALESCE(SUM(x_margin_per_user * x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__pre_sum_squares,
  CAST(COALESCE(SUM(v_margin_per_user * x_margin_per_user), 0) AS DOUBLE) AS margin_per_user__sum_product,
  COUNT(v_return_rate) AS return_rate__n,
  CAST(COALESCE(SUM(v_return_rate), 0) AS DOUBLE) AS return_rate__sum,
  CAST(COALESCE(SUM(v_return_rate * v_return_rate), 0) AS DOUBLE) AS return_rate__sum_squares,
  CAST(COALESCE(SUM(d_return_rate), 0) AS DOUBLE) AS return_rate__denominator_sum,
  CAST(COALESCE(SUM(d_return_rate * d_return_rate), 0) AS DOUBLE) AS return_rate__denominator_sum_squares,
  CAST(COALESCE(SUM(v_return_rate * d_return_rate), 0) AS DOUBLE) AS return_rate__sum_product,
  COUNT(v_retention_7d) AS retention_7d__n,
  CAST(COALESCE(SUM(v_retention_7d) FILTER(WHERE
    NOT v_retention_7d IS NULL), 0) AS DOUBLE) AS retention_7d__sum,
  CAST(COALESCE(SUM(v_retention_7d * v_retention_7d) FILTER(WHERE
    NOT v_retention_7d IS NULL), 0) AS DOUBLE) AS retention_7d__sum_squares,
  COUNT(v_opt_out_rate) AS opt_out_rate__n,
  CAST(COALESCE(SUM(v_opt_out_rate), 0) AS DOUBLE) AS opt_out_rate__sum,
  CAST(COALESCE(SUM(v_opt_out_rate * v_opt_out_rate), 0) AS DOUBLE) AS opt_out_rate__sum_squares,
  COUNT(v_nps) AS nps__n,
  CAST(COALESCE(SUM(v_nps), 0) AS DOUBLE) AS nps__sum,
  CAST(COALESCE(SUM(v_nps * v_nps), 0) AS DOUBLE) AS nps__sum_squares,
  CAST(COALESCE(SUM(d_nps), 0) AS DOUBLE) AS nps__denominator_sum,
  CAST(COALESCE(SUM(d_nps * d_nps), 0) AS DOUBLE) AS nps__denominator_sum_squares,
  CAST(COALESCE(SUM(v_nps * d_nps), 0) AS DOUBLE) AS nps__sum_product
FROM (
  WITH units AS MATERIALIZED (
    SELECT
      HASH(experiment_id, uid) AS unit_no,
      *
    FROM (
      SELECT
        x.*,
        COALESCE(s.segment, 'unknown') AS segment
      FROM (
        SELECT
          f.experiment_id,
          HASH(f.user_id) AS uid,
          MIN(f.ts) AS first_ts,
          ARG_MIN(f.arm, f.ts) AS arm,
          ANY_VALUE(f.placement) AS placement,
          COUNT(*) AS m_exposures__w0_end
        FROM exposures AS f
        WHERE
          NOT f.experiment_id IS NULL
          AND NOT f.arm IS NULL
          AND f.arm <> 'holdout'
          AND (
            $f_start IS NULL OR f.ts >= $f_start
          )
          AND (
            $f_end IS NULL OR f.ts < $f_end
          )
          AND (
            $f_channel IS NULL OR f.channel = $f_channel
          )
        GROUP BY
          f.experiment_id,
          uid
      ) AS x
      LEFT JOIN (
        SELECT
          HASH(d.user_id) AS uid,
          ARG_MIN(d.segment, d.ts) AS segment
        FROM decisions AS d
        GROUP BY
          uid
      ) AS s
        USING (uid)
      WHERE
        $f_segment IS NULL OR s.segment = $f_segment
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
      event_type IN (
        'click',
        'email_click',
        'nps_response',
        'opt_out',
        'page_view',
        'purchase',
        'return'
      )
  ), outcomes AS (
    SELECT
      u.unit_no,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts >= u.first_ts) AS m_orders__w0_end,
      SUM(COALESCE(e.revenue, 0)) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts >= u.first_ts) AS m_revenue__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('click', 'email_click')
        AND e.placement = u.placement
        AND e.ts >= u.first_ts) AS m_clicks__w0_end,
      SUM(
        CASE
          WHEN e.event_type = 'purchase'
          THEN COALESCE(e.margin, 0)
          ELSE -ABS(COALESCE(e.margin, 0))
        END
      ) FILTER(WHERE
        e.event_type IN ('purchase', 'return') AND TRUE AND e.ts >= u.first_ts) AS m_net_margin__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('return') AND TRUE AND e.ts >= u.first_ts) AS m_returns__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('page_view')
        AND TRUE
        AND e.ts >= u.first_ts + INTERVAL '24' HOUR
        AND e.ts < u.first_ts + INTERVAL '168' HOUR) AS m_visits__w24_168,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('opt_out') AND TRUE AND e.ts >= u.first_ts) AS m_opt_outs__w0_end,
      SUM(CASE WHEN e.nps_score >= 9 THEN 100 WHEN e.nps_score <= 6 THEN -100 ELSE 0 END) FILTER(WHERE
        e.event_type IN ('nps_response')
        AND NOT e.nps_score IS NULL
        AND e.ts >= u.first_ts) AS m_nps_points__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('nps_response')
        AND NOT e.nps_score IS NULL
        AND e.ts >= u.first_ts) AS m_nps_responses__w0_end,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts < u.first_ts) AS m_orders__pre,
      SUM(COALESCE(e.revenue, 0)) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts < u.first_ts) AS m_revenue__pre,
      SUM(
        CASE
          WHEN e.event_type = 'purchase'
          THEN COALESCE(e.margin, 0)
          ELSE -ABS(COALESCE(e.margin, 0))
        END
      ) FILTER(WHERE
        e.event_type IN ('purchase', 'return') AND TRUE AND e.ts < u.first_ts) AS m_net_margin__pre
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
    CAST(COALESCE(o.m_orders__w0_end, 0) > 0 AS INT) AS v_conversion_rate,
    CAST(COALESCE(o.m_orders__pre, 0) > 0 AS INT) AS x_conversion_rate,
    COALESCE(o.m_revenue__w0_end, 0) AS v_revenue_per_user,
    COALESCE(o.m_revenue__pre, 0) AS x_revenue_per_user,
    COALESCE(o.m_revenue__w0_end, 0) AS v_aov,
    COALESCE(o.m_orders__w0_end, 0) AS d_aov,
    COALESCE(o.m_clicks__w0_end, 0) AS v_ctr,
    COALESCE(u.m_exposures__w0_end, 0) AS d_ctr,
    COALESCE(o.m_net_margin__w0_end, 0) AS v_margin_per_user,
    COALESCE(o.m_net_margin__pre, 0) AS x_margin_per_user,
    COALESCE(o.m_returns__w0_end, 0) AS v_return_rate,
    COALESCE(o.m_orders__w0_end, 0) AS d_return_rate,
    CASE
      WHEN a.t >= u.first_ts + INTERVAL '168' HOUR
      THEN CAST(COALESCE(o.m_visits__w24_168, 0) > 0 AS INT)
    END AS v_retention_7d,
    CAST(COALESCE(o.m_opt_outs__w0_end, 0) > 0 AS INT) AS v_opt_out_rate,
    COALESCE(o.m_nps_points__w0_end, 0) AS v_nps,
    COALESCE(o.m_nps_responses__w0_end, 0) AS d_nps
  FROM units AS u
  CROSS JOIN as_of AS a
  LEFT JOIN outcomes AS o
    USING (unit_no)
)
GROUP BY ALL
