-- executive.trend: Revenue per group (exposed, holdout) and day or hour, from each user's first decision, read from the rollups (executive_revenue: revenue by day of first decision and hour).
-- binds: $f_journey, $f_channel, $f_segment, $first_day, $last_day, $last_hour
-- rendered with: pre_days=14, as_of=datetime.datetime(2026, 6, 13, 2, 0, tzinfo=datetime.timezone.utc), grain='day'
SELECT
  grp,
  MAKE_TIMESTAMP(hour // 24 * 24 * 3600000000) AS bucket,
  SUM(revenue) AS revenue
FROM executive_revenue
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
  AND hour <= $last_hour
GROUP BY
  grp,
  bucket
ORDER BY
  bucket,
  grp
