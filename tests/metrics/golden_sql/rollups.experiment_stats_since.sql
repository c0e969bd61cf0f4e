-- rollups.experiment_stats_since: The rollups' experiment_stats: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
SELECT
  experiment_id,
  arm,
  segment,
  channel,
  cohort_day,
  change_day,
  CAST(SUM(exposed__users) AS BIGINT) AS exposed__users,
  CAST(SUM(conversion_rate__n) AS BIGINT) AS conversion_rate__n,
  CAST(SUM(conversion_rate__sum) AS DOUBLE) AS conversion_rate__sum,
  CAST(SUM(conversion_rate__sum_squares) AS DOUBLE) AS conversion_rate__sum_squares,
  CAST(SUM(conversion_rate__pre_sum) AS DOUBLE) AS conversion_rate__pre_sum,
  CAST(SUM(conversion_rate__pre_sum_squares) AS DOUBLE) AS conversion_rate__pre_sum_squares,
  CAST(SUM(conversion_rate__sum_product) AS DOUBLE) AS conversion_rate__sum_product,
  CAST(SUM(revenue_per_user__n) AS BIGINT) AS revenue_per_user__n,
  CAST(SUM(revenue_per_user__sum) AS DOUBLE) AS revenue_per_user__sum,
  CAST(SUM(revenue_per_user__sum_squares) AS DOUBLE) AS revenue_per_user__sum_squares,
  CAST(SUM(revenue_per_user__pre_sum) AS DOUBLE) AS revenue_per_user__pre_sum,
  CAST(SUM(revenue_per_user__pre_sum_squares) AS DOUBLE) AS revenue_per_user__pre_sum_squares,
  CAST(SUM(revenue_per_user__sum_product) AS DOUBLE) AS revenue_per_user__sum_product,
  CAST(SUM(aov__n) AS BIGINT) AS aov__n,
  CAST(SUM(aov__sum) AS DOUBLE) AS aov__sum,
  CAST(SUM(aov__sum_squares) AS DOUBLE) AS aov__sum_squares,
  CAST(SUM(aov__denominator_sum) AS DOUBLE) AS aov__denominator_sum,
  CAST(SUM(aov__denominator_sum_squares) AS DOUBLE) AS aov__denominator_sum_squares,
  CAST(SUM(aov__sum_product) AS DOUBLE) AS aov__sum_product,
  CAST(SUM(ctr__n) AS BIGINT) AS ctr__n,
  CAST(SUM(ctr__sum) AS DOUBLE) AS ctr__sum,
  CAST(SUM(ctr__sum_squares) AS DOUBLE) AS ctr__sum_squares,
  CAST(SUM(ctr__denominator_sum) AS DOUBLE) AS ctr__denominator_sum,
  CAST(SUM(ctr__denominator_sum_squares) AS DOUBLE) AS ctr__denominator_sum_squares,
  CAST(SUM(ctr__sum_product) AS DOUBLE) AS ctr__sum_product,
  CAST(SUM(margin_per_user__n) AS BIGINT) AS margin_per_user__n,
  CAST(SUM(margin_per_user__sum) AS DOUBLE) AS margin_per_user__sum,
  CAST(SUM(margin_per_user__sum_squares) AS DOUBLE) AS margin_per_user__sum_squares,
  CAST(SUM(margin_per_user__pre_sum) AS DOUBLE) AS margin_per_user__pre_sum,
  CAST(SUM(margin_per_user__pre_sum_squares) AS DOUBLE) AS margin_per_user__pre_sum_squares,
  CAST(SUM(margin_per_user__sum_product) AS DOUBLE) AS margin_per_user__sum_product,
  CAST(SUM(return_rate__n) AS BIGINT) AS return_rate__n,
  CAST(SUM(return_rate__sum) AS DOUBLE) AS return_rate__sum,
  CAST(SUM(return_rate__sum_squares) AS DOUBLE) AS return_rate__sum_squares,
  CAST(SUM(return_rate__denominator_sum) AS DOUBLE) AS return_rate__denominator_sum,
  CAST(SUM(return_rate__denominator_sum_squares) AS DOUBLE) AS return_rate__denominator_sum_squares,
  CAST(SUM(return_rate__sum_product) AS DOUBLE) AS return_rate__sum_product,
  CAST(SUM(retention_7d__n) AS BIGINT) AS retention_7d__n,
  CAST(SUM(retention_7d__sum) AS DOUBLE) AS retention_7d__sum,
  CAST(SUM(retention_7d__sum_squares) AS DOUBLE) AS retention_7d__sum_squares,
  CAST(SUM(opt_out_rate__n) AS BIGINT) AS opt_out_rate__n,
  CAST(SUM(opt_out_rate__sum) AS DOUBLE) AS opt_out_rate__sum,
  CAST(SUM(opt_out_rate__sum_squares) AS DOUBLE) AS opt_out_rate__sum_squares,
  CAST(SUM(nps__n) AS BIGINT) AS nps__n,
  CAST(SUM(nps__sum) AS DOUBLE) AS nps__sum,
  CAST(SUM(nps__sum_squares) AS DOUBLE) AS nps__sum_squares,
  CAST(SUM(nps__denominator_sum) AS DOUBLE) AS nps__denominator_sum,
  CAST(SUM(nps__denominator_sum_squares) AS DOUBLE) AS nps__denominator_sum_squares,
  CAST(SUM(nps__sum_product) AS DOUBLE) AS nps__sum_product
FROM (
  SELECT
    *
  FROM rollup_experiment_stats
  WHERE
    run_id IN (
      SELECT
        run_id
      FROM rollup_runs
    ) AND run_id > $after
)
GROUP BY
  experiment_id,
  arm,
  segment,
  channel,
  cohort_day,
  change_day
