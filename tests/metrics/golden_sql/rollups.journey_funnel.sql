-- rollups.journey_funnel: The rollups' journey_funnel: the rows of every logged run, added up per bucket.
-- binds: nothing
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
    )
)
GROUP BY
  day,
  journey,
  channel,
  segment,
  serving
