-- compliance.erasures: The erasure log, newest first.
-- binds: nothing
SELECT
  ts,
  erasure_id,
  subject_hash,
  rows_deleted,
  tables,
  requested_by
FROM erasures
ORDER BY
  ts DESC
