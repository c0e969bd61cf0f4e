-- rollups.health_ops: The rollups' health_ops: the rows of every logged run, added up per bucket.
-- binds: nothing
SELECT
  hour,
  journey,
  channel,
  segment,
  error_code,
  fallback_reason,
  CAST(SUM(decisions) AS BIGINT) AS decisions,
  CAST(SUM(consented) AS BIGINT) AS consented
FROM (
  SELECT
    *
  FROM rollup_health_ops
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
  error_code,
  fallback_reason
