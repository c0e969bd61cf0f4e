-- executive.summary: Sufficient statistics of the headline metrics of the users first reached in the period, for users outside the global holdout (exposed) and in it, outcomes from each user's first decision: read from the rollups (executive_stats: increments by day of first decision and day of change).
-- binds: $as_of, $f_journey, $f_channel, $f_segment, $first_day, $last_day
-- rendered with: pre_days=14, as_of=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc)
SELECT
  grp,
  SUM(users) AS users,
  SUM(arpu__n) AS arpu__n,
  SUM(arpu__sum) AS arpu__sum,
  SUM(arpu__sum_squares) AS arpu__sum_squares,
  SUM(arpu__pre_sum) AS arpu__pre_sum,
  SUM(arpu__pre_sum_squares) AS arpu__pre_sum_squares,
  SUM(arpu__sum_product) AS arpu__sum_product,
  SUM(margin_per_user__n) AS margin_per_user__n,
  SUM(margin_per_user__sum) AS margin_per_user__sum,
  SUM(margin_per_user__sum_squares) AS margin_per_user__sum_squares,
  SUM(margin_per_user__pre_sum) AS margin_per_user__pre_sum,
  SUM(margin_per_user__pre_sum_squares) AS margin_per_user__pre_sum_squares,
  SUM(margin_per_user__sum_product) AS margin_per_user__sum_product,
  SUM(conversion_rate__n) AS conversion_rate__n,
  SUM(conversion_rate__sum) AS conversion_rate__sum,
  SUM(conversion_rate__sum_squares) AS conversion_rate__sum_squares,
  SUM(conversion_rate__pre_sum) AS conversion_rate__pre_sum,
  SUM(conversion_rate__pre_sum_squares) AS conversion_rate__pre_sum_squares,
  SUM(conversion_rate__sum_product) AS conversion_rate__sum_product,
  SUM(aov__n) AS aov__n,
  SUM(aov__sum) AS aov__sum,
  SUM(aov__sum_squares) AS aov__sum_squares,
  SUM(aov__denominator_sum) AS aov__denominator_sum,
  SUM(aov__denominator_sum_squares) AS aov__denominator_sum_squares,
  SUM(aov__sum_product) AS aov__sum_product,
  SUM(nps__n) AS nps__n,
  SUM(nps__sum) AS nps__sum,
  SUM(nps__sum_squares) AS nps__sum_squares,
  SUM(nps__denominator_sum) AS nps__denominator_sum,
  SUM(nps__denominator_sum_squares) AS nps__denominator_sum_squares,
  SUM(nps__sum_product) AS nps__sum_product,
  SUM(coverage__n) AS coverage__n,
  SUM(coverage__sum) AS coverage__sum,
  SUM(coverage__sum_squares) AS coverage__sum_squares,
  MAKE_TIMESTAMPTZ(MIN(cohort_day) * 86400000000) AS first_ts,
  $as_of AS as_of
FROM executive_stats
WHERE
  scope = COALESCE($f_journey, '*')
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
  grp
ORDER BY
  grp
