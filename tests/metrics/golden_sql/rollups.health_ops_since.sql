-- rollups.health_ops_since: The rollups' health_ops: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
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
    ) AND run_id > $after
)
GROUP BY
  hour,
  journey,
  channel,
  segment,
  error_code,
  fallback_reason
