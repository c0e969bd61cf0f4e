-- rollups.event_counts: The rollups' event_counts: the rows of every logged run, added up per bucket.
-- binds: nothing
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
    )
)
GROUP BY
  hour,
  channel,
  segment
