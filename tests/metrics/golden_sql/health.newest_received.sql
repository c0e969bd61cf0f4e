-- health.newest_received: When the newest event reached the lake.
-- binds: nothing
SELECT
  MAX(received_at)
FROM events
