-- rollups.executive_revenue: The rollups' executive_revenue: the rows of every logged run, added up per bucket.
-- binds: nothing
SELECT
  scope,
  grp,
  segment,
  channel,
  cohort_day,
  hour,
  CAST(SUM(revenue) AS DOUBLE) AS revenue
FROM (
  SELECT
    *
  FROM rollup_executive_revenue
  WHERE
    run_id IN (
      SELECT
        run_id
      FROM rollup_runs
    )
)
GROUP BY
  scope,
  grp,
  segment,
  channel,
  cohort_day,
  hour
