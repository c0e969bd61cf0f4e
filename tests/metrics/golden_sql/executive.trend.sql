-- executive.trend: Revenue per group (exposed, holdout) and day or hour, from each user's first decision.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
-- rendered with: grain='day'
WITH units AS (
  SELECT
    HASH(d.user_id) AS uid,
    MIN(d.ts) AS first_ts,
    CAST(NULL AS TEXT) AS placement,
    CASE
      WHEN BOOL_OR(CAST(d.arm = 'holdout' AS BOOLEAN))
      THEN 'holdout'
      ELSE 'exposed'
    END AS grp,
    COUNT(*) FILTER(WHERE
      (
        d.status = 'ok'
        AND NOT d.fallback
        AND d.policy IN ('rules', 'thompson', 'propensity')
      )) AS m_personalised__w0_end
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
  GROUP BY
    uid
)
SELECT
  u.grp,
  (
    CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(e.ts) // 86400000000 AS INT)
  ) AS bucket,
  CAST(SUM(COALESCE(e.revenue, 0)) AS DOUBLE) AS revenue
FROM units AS u
JOIN events AS e
  ON HASH(e.user_id) = u.uid AND e.ts >= u.first_ts
WHERE
  e.event_type IN ('purchase') AND TRUE AND (
    $f_end IS NULL OR e.ts < $f_end
  )
GROUP BY ALL
ORDER BY
  bucket
