-- health.model_versions: Per policy and model: the version serving last, versions served, decisions, first and last seen.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
WITH versions AS (
  SELECT
    d.policy,
    d.model_version,
    COUNT(*) AS decisions,
    MIN(d.ts) AS first_seen,
    MAX(d.ts) AS last_seen
  FROM decisions AS d
  WHERE
    (
      $f_start IS NULL OR d.ts >= $f_start
    )
    AND (
      $f_end IS NULL OR d.ts < $f_end
    )
    AND (
      $f_channel IS NULL OR d.channel = $f_channel
    )
    AND (
      $f_segment IS NULL OR d.segment = $f_segment
    )
    AND (
      $f_journey IS NULL OR d.journey = $f_journey
    )
  GROUP BY ALL
)
SELECT
  policy,
  COALESCE(REGEXP_REPLACE(model_version, '[.][0-9]+$', ''), '(none)') AS model,
  ARG_MAX(model_version, last_seen) AS latest_version,
  COUNT(model_version) AS versions,
  CAST(SUM(decisions) AS BIGINT) AS decisions,
  MIN(first_seen) AS first_seen,
  MAX(last_seen) AS last_seen
FROM versions
GROUP BY
  policy,
  model
ORDER BY
  policy,
  last_seen DESC
