-- rollups.latency_histogram_since: The rollups' latency_histogram: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
SELECT
  hour,
  journey,
  channel,
  segment,
  latency_bucket,
  CAST(SUM(decisions) AS BIGINT) AS decisions
FROM (
  SELECT
    *
  FROM rollup_latency_histogram
  WHERE
    run_id IN (
      SELECT
        run_id
      FROM rollup_runs
    ) AND run_id > $after
)
GROUP BY
  hour,
  journey,
  channel,
  segment,
  latency_bucket
