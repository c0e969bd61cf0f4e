-- experiments.cumulative: One experiment's statistics of one metric per arm as of the end of each day (outcomes up to that day).
-- binds: $experiment, $f_start, $f_end, $f_channel, $pre_days
-- rendered with: experiment_id='exp_home_showcase', metric_name='conversion_rate', pre_days=14
WITH units AS MATERIALIZED (
  SELECT
    HASH(experiment_id, uid) AS unit_no,
    *
  FROM (
    SELECT
      f.experiment_id,
      HASH(f.user_id) AS uid,
      MIN(f.ts) AS first_ts,
      ARG_MIN(f.arm, f.ts) AS arm,
      ANY_VALUE(f.placement) AS placement
    FROM exposures AS f
    WHERE
      NOT f.experiment_id IS NULL
      AND NOT f.arm IS NULL
      AND f.arm <> 'holdout'
      AND f.experiment_id = $experiment
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
    event_type IN ('purchase')
), pre AS (
  SELECT
    u.unit_no,
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
    AND e.ts < u.first_ts
  GROUP BY ALL
), increments AS (
  SELECT
    unit_no,
    day,
    COALESCE(SUM(m_orders__w0_end), 0) AS m_orders__w0_end
  FROM (
    SELECT
      u.unit_no,
      (
        CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(e.ts) // 86400000000 AS INT)
      ) AS day,
      COUNT(*) FILTER(WHERE
        e.event_type IN ('purchase') AND TRUE AND e.ts >= u.first_ts) AS m_orders__w0_end
    FROM units AS u
    JOIN facts AS e
      ON e.uid = u.uid AND e.ts < (
        SELECT
          t
        FROM as_of
      ) AND e.ts >= u.first_ts
    GROUP BY ALL
  )
  GROUP BY ALL
), running AS (
  SELECT
    unit_no,
    day,
    m_orders__w0_end AS m_orders__w0_end__today,
    SUM(m_orders__w0_end) OVER (PARTITION BY unit_no ORDER BY day) AS m_orders__w0_end
  FROM increments
), changes AS (
  SELECT
    u.arm,
    r.day,
    CAST(COALESCE(r.m_orders__w0_end, 0) > 0 AS INT) - CAST(COALESCE((
      r.m_orders__w0_end - r.m_orders__w0_end__today
    ), 0) > 0 AS INT) AS conversion_rate__sum,
    CAST(COALESCE(r.m_orders__w0_end, 0) > 0 AS INT) * CAST(COALESCE(r.m_orders__w0_end, 0) > 0 AS INT) - CAST(COALESCE((
      r.m_orders__w0_end - r.m_orders__w0_end__today
    ), 0) > 0 AS INT) * CAST(COALESCE((
      r.m_orders__w0_end - r.m_orders__w0_end__today
    ), 0) > 0 AS INT) AS conversion_rate__sum_squares,
    (
      CAST(COALESCE(r.m_orders__w0_end, 0) > 0 AS INT) - CAST(COALESCE((
        r.m_orders__w0_end - r.m_orders__w0_end__today
      ), 0) > 0 AS INT)
    ) * CAST(COALESCE(p.m_orders__pre, 0) > 0 AS INT) AS conversion_rate__sum_product
  FROM running AS r
  JOIN units AS u
    USING (unit_no)
  LEFT JOIN pre AS p
    USING (unit_no)
  UNION ALL BY NAME
  SELECT
    u.arm,
    (
      CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(u.first_ts) // 86400000000 AS INT)
    ) AS day,
    1 AS conversion_rate__n,
    CAST(COALESCE(p.m_orders__pre, 0) > 0 AS INT) AS conversion_rate__pre_sum,
    CAST(COALESCE(p.m_orders__pre, 0) > 0 AS INT) * CAST(COALESCE(p.m_orders__pre, 0) > 0 AS INT) AS conversion_rate__pre_sum_squares
  FROM units AS u
  LEFT JOIN pre AS p
    USING (unit_no)
), days AS (
  SELECT
    CAST(range AS DATE) AS day
  FROM RANGE(
    (
      SELECT
        MIN(
          (
            CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(first_ts) // 86400000000 AS INT)
          )
        )
      FROM units
    ),
    (
      SELECT
        (
          CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(t - INTERVAL '1' MICROSECOND) // 86400000000 AS INT)
        ) + 1
      FROM as_of
    ),
    INTERVAL '1' DAY
  )
), per_day AS (
  SELECT
    arm,
    day,
    SUM(conversion_rate__n) AS conversion_rate__n,
    SUM(conversion_rate__sum) AS conversion_rate__sum,
    SUM(conversion_rate__sum_squares) AS conversion_rate__sum_squares,
    SUM(conversion_rate__pre_sum) AS conversion_rate__pre_sum,
    SUM(conversion_rate__pre_sum_squares) AS conversion_rate__pre_sum_squares,
    SUM(conversion_rate__sum_product) AS conversion_rate__sum_product
  FROM changes
  GROUP BY ALL
), grid AS (
  SELECT
    g.arm,
    d.day
  FROM (
    SELECT DISTINCT
      arm
    FROM units
  ) AS g
  CROSS JOIN days AS d
)
SELECT
  g.arm,
  g.day,
  CAST(SUM(COALESCE(p.conversion_rate__n, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS BIGINT) AS conversion_rate__n,
  CAST(SUM(COALESCE(p.conversion_rate__sum, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS DOUBLE) AS conversion_rate__sum,
  CAST(SUM(COALESCE(p.conversion_rate__sum_squares, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS DOUBLE) AS conversion_rate__sum_squares,
  CAST(SUM(COALESCE(p.conversion_rate__pre_sum, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS DOUBLE) AS conversion_rate__pre_sum,
  CAST(SUM(COALESCE(p.conversion_rate__pre_sum_squares, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS DOUBLE) AS conversion_rate__pre_sum_squares,
  CAST(SUM(COALESCE(p.conversion_rate__sum_product, 0)) OVER (PARTITION BY g.arm ORDER BY g.day) AS DOUBLE) AS conversion_rate__sum_product
FROM grid AS g
LEFT JOIN per_day AS p
  ON p.arm = g.arm AND p.day = g.day
ORDER BY
  g.day,
  g.arm
