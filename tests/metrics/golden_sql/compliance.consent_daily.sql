-- compliance.consent_daily: Per UTC day: decisions, consented decisions, consent withdrawals and opt-outs.
-- binds: $f_start, $f_end, $f_channel, $f_segment, $f_journey
WITH dd AS (
  SELECT
    (
      CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(d.ts) // 86400000000 AS INT)
    ) AS day,
    COUNT(*) AS decisions,
    COUNT(*) FILTER(WHERE
      d.consent) AS consented
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
    day
), ee AS (
  SELECT
    (
      CAST('1970-01-01' AS DATE) + CAST(EPOCH_US(e.ts) // 86400000000 AS INT)
    ) AS day,
    COUNT(*) FILTER(WHERE
      e.event_type = 'consent_change' AND e.consent = FALSE) AS withdrawals,
    COUNT(*) FILTER(WHERE
      e.event_type = 'opt_out') AS opt_outs
  FROM events AS e
  WHERE
    (
      $f_start IS NULL OR e.ts >= $f_start
    )
    AND (
      $f_end IS NULL OR e.ts < $f_end
    )
    AND (
      $f_channel IS NULL OR e.channel = $f_channel
    )
    AND (
      $f_segment IS NULL OR e.segment = $f_segment
    )
    AND e.event_type IN ('consent_change', 'opt_out')
  GROUP BY
    day
)
SELECT
  day,
  COALESCE(dd.decisions, 0) AS decisions,
  COALESCE(dd.consented, 0) AS consented,
  COALESCE(ee.withdrawals, 0) AS withdrawals,
  COALESCE(ee.opt_outs, 0) AS opt_outs
FROM dd
FULL OUTER JOIN ee
  USING (day)
ORDER BY
  day
