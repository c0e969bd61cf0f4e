-- rollups.executive_revenue_since: The rollups' executive_revenue: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
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
    ) AND run_id > $after
)
GROUP BY
  scope,
  grp,
  segment,
  channel,
  cohort_day,
  hour
