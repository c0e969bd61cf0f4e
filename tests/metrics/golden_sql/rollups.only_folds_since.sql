-- rollups.only_folds_since: Whether every run logged after the one the cockpit last read only appended increments (none rebuilt, erased or compacted): then only the newer runs' rows are read and added.
-- binds: $after
-- rendered with: after=1781316000000000
SELECT
  COUNT(*) FILTER(WHERE
    run_id = $after) = 1
  AND COUNT(*) FILTER(WHERE
    run_id > $after AND kind <> 'fold') = 0 AS only_folds
FROM rollup_runs
WHERE
  run_id >= $after
