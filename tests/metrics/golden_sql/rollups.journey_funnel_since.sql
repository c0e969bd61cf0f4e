-- rollups.journey_funnel_since: The rollups' journey_funnel: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
SELECT
  day,
  journey,
  channel,
  segment,
  serving,
  CAST(SUM(decisions) AS BIGINT) AS decisions,
  CAST(SUM(exposed) AS BIGINT) AS exposed,
  CAST(SUM(clicked) AS BIGINT) AS clicked,
  CAST(SUM(converted) AS BIGINT) AS converted
FROM (
  SELECT
    *
  FROM rollup_journey_funnel
  WHERE
    run_id IN (
      SELECT
        run_id
      FROM rollup_runs
    ) AND run_id > $after
)
GROUP BY
  day,
  journey,
  channel,
  segment,
  serving
