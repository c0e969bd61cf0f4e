-- rollups.latest_run: The rollup job's newest logged run: its watermark per raw table and the versions of the rollup tables it left.
-- binds: nothing
SELECT
  *
FROM rollup_runs
ORDER BY
  run_id DESC
LIMIT 1
