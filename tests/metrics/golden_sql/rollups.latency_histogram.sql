-- rollups.latency_histogram: The rollups' latency_histogram: the rows of every logged run, added up per bucket.
-- binds: nothing
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
    )
)
GROUP BY
  hour,
  journey,
  channel,
  segment,
  latency_bucket
