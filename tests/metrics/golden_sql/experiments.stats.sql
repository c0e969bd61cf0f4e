-- experiments.stats: Sufficient statistics of each metric per experiment, arm, segment and UTC day of first exposure, read from the rollups (experiment_stats: the increments of the users exposed in each experiment, by day of first exposure and day of change): the units that entered in the period, as of its end.
-- binds: $experiment, $f_channel, $f_segment, $first_day, $last_day
-- rendered with: pre_days=14, metric_names=('conversion_rate', 'revenue_per_user', 'aov', 'ctr', 'margin_per_user', 'return_rate', 'retention_7d', 'opt_out_rate', 'nps'), as_of=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc)
SELECT
  experiment_id,
  arm,
  segment,
  CAST('1970-01-01' AS DATE) + cohort_day AS day,
  SUM(exposed__users) AS exposed__users,
  SUM(conversion_rate__n) AS conversion_rate__n,
  SUM(conversion_rate__sum) AS conversion_rate__sum,
  SUM(conversion_rate__sum_squares) AS conversion_rate__sum_squares,
  SUM(conversion_rate__pre_sum) AS conversion_rate__pre_sum,
  SUM(conversion_rate__pre_sum_squares) AS conversion_rate__pre_sum_squares,
  SUM(conversion_rate__sum_product) AS conversion_rate__sum_product,
  SUM(revenue_per_user__n) AS revenue_per_user__n,
  SUM(revenue_per_user__sum) AS revenue_per_user__sum,
  SUM(revenue_per_user__sum_squares) AS revenue_per_user__sum_squares,
  SUM(revenue_per_user__pre_sum) AS revenue_per_user__pre_sum,
  SUM(revenue_per_user__pre_sum_squares) AS revenue_per_user__pre_sum_squares,
  SUM(revenue_per_user__sum_product) AS revenue_per_user__sum_product,
  SUM(aov__n) AS aov__n,
  SUM(aov__sum) AS aov__sum,
  SUM(aov__sum_squares) AS aov__sum_squares,
  SUM(aov__denominator_sum) AS aov__denominator_sum,
  SUM(aov__denominator_sum_squares) AS aov__denominator_sum_squares,
  SUM(aov__sum_product) AS aov__sum_product,
  SUM(ctr__n) AS ctr__n,
  SUM(ctr__sum) AS ctr__sum,
  SUM(ctr__sum_squares) AS ctr__sum_squares,
  SUM(ctr__denominator_sum) AS ctr__denominator_sum,
  SUM(ctr__denominator_sum_squares) AS ctr__denominator_sum_squares,
  SUM(ctr__sum_product) AS ctr__sum_product,
  SUM(margin_per_user__n) AS margin_per_user__n,
  SUM(margin_per_user__sum) AS margin_per_user__sum,
  SUM(margin_per_user__sum_squares) AS margin_per_user__sum_squares,
  SUM(margin_per_user__pre_sum) AS margin_per_user__pre_sum,
  SUM(margin_per_user__pre_sum_squares) AS margin_per_user__pre_sum_squares,
  SUM(margin_per_user__sum_product) AS margin_per_user__sum_product,
  SUM(return_rate__n) AS return_rate__n,
  SUM(return_rate__sum) AS return_rate__sum,
  SUM(return_rate__sum_squares) AS return_rate__sum_squares,
  SUM(return_rate__denominator_sum) AS return_rate__denominator_sum,
  SUM(return_rate__denominator_sum_squares) AS return_rate__denominator_sum_squares,
  SUM(return_rate__sum_product) AS return_rate__sum_product,
  SUM(retention_7d__n) AS retention_7d__n,
  SUM(retention_7d__sum) AS retention_7d__sum,
  SUM(retention_7d__sum_squares) AS retention_7d__sum_squares,
  SUM(opt_out_rate__n) AS opt_out_rate__n,
  SUM(opt_out_rate__sum) AS opt_out_rate__sum,
  SUM(opt_out_rate__sum_squares) AS opt_out_rate__sum_squares,
  SUM(nps__n) AS nps__n,
  SUM(nps__sum) AS nps__sum,
  SUM(nps__sum_squares) AS nps__sum_squares,
  SUM(nps__denominator_sum) AS nps__denominator_sum,
  SUM(nps__denominator_sum_squares) AS nps__denominator_sum_squares,
  SUM(nps__sum_product) AS nps__sum_product
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
  experiment_id,
  arm,
  segment,
  cohort_day
ORDER BY
  experiment_id,
  arm,
  segment,
  day
