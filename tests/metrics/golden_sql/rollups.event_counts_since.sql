-- rollups.event_counts_since: The rollups' event_counts: the rows of the runs logged after the one last read, added up per bucket (added to what was read then).
-- binds: $after
-- rendered with: after=1781316000000000
SELECT
  hour,
  channel,
  segment,
  CAST(SUM(events) AS BIGINT) AS events,
  CAST(SUM(consent_events) AS BIGINT) AS consent_events,
  CAST(SUM(withdrawals) AS BIGINT) AS withdrawals,
  CAST(SUM(opt_outs) AS BIGINT) AS opt_outs
FROM (
  SELECT
    *
  FROM rollup_event_counts
  WHERE
    run_id IN (
      SELECT
        run_id
      FROM rollup_runs
    ) AND run_id > $after
)
GROUP BY
  hour,
  channel,
  segment
