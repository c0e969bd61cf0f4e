-- experiments.cumulative: One experiment's statistics of one metric per arm as of the end of each day (outcomes up to that day), read from the rollups' experiment_stats.
-- binds: $experiment, $f_channel, $f_segment, $first_day, $last_day
-- rendered with: experiment_id='exp_home_showcase', metric_name='conversion_rate', pre_days=14, as_of=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc)
WITH changes AS (
  SELECT
    arm,
    change_day,
    SUM(conversion_rate__n) AS conversion_rate__n,
    SUM(conversion_rate__sum) AS conversion_rate__sum,
    SUM(conversion_rate__sum_squares) AS conversion_rate__sum_squares,
    SUM(conversion_rate__pre_sum) AS conversion_rate__pre_sum,
    SUM(conversion_rate__pre_sum_squares) AS conversion_rate__pre_sum_squares,
    SUM(conversion_rate__sum_product) AS conversion_rate__sum_product
  FROM experiment_stats
  WHERE
    (
      $experiment IS NULL OR experiment_id = $experiment
    )
    AND (
      $f_channel IS NULL OR channel = $f_channel
    )
    AND (
      $f_segment IS NULL OR segment = $f_segment
    )
    AND (
      $first_day IS NULL OR cohort_day >= $first_day
    )
    AND cohort_day <= $last_day
    AND change_day <= $last_day
  GROUP BY
    arm,
    change_day
), days AS (
  SELECT
    range AS day
  FROM RANGE(
    (
      SELECT
        MIN(cohort_day)
      FROM experiment_stats
      WHERE
        (
          $experiment IS NULL OR experiment_id = $experiment
        )
        AND (
          $f_channel IS NULL OR channel = $f_channel
        )
        AND (
          $f_segment IS NULL OR segment = $f_segment
        )
        AND (
          $first_day IS NULL OR cohort_day >= $first_day
        )
        AND cohort_day <= $last_day
        AND change_day <= $last_day
    ),
    $last_day + 1
  )
)
SELECT
  a.arm,
  CAST('1970-01-01' AS DATE) + CAST(d.day AS INT) AS day,
  CAST(SUM(COALESCE(c.conversion_rate__n, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS BIGINT) AS conversion_rate__n,
  CAST(SUM(COALESCE(c.conversion_rate__sum, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS DOUBLE) AS conversion_rate__sum,
  CAST(SUM(COALESCE(c.conversion_rate__sum_squares, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS DOUBLE) AS conversion_rate__sum_squares,
  CAST(SUM(COALESCE(c.conversion_rate__pre_sum, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS DOUBLE) AS conversion_rate__pre_sum,
  CAST(SUM(COALESCE(c.conversion_rate__pre_sum_squares, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS DOUBLE) AS conversion_rate__pre_sum_squares,
  CAST(SUM(COALESCE(c.conversion_rate__sum_product, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS DOUBLE) AS conversion_rate__sum_product
FROM (
  SELECT DISTINCT
    arm
  FROM changes
) AS a
CROSS JOIN days AS d
LEFT JOIN changes AS c
  ON c.arm = a.arm AND c.change_day = d.day
ORDER BY
  day,
  a.arm
