"""The governance state a restart would forget, read back from the lake at start-up.

Between decisions the service keeps identity links, consent withdrawals, today's frequency-cap
counts and today's purchases in memory. Without this, a restart (a deploy, a crash) would, until
each user acted again, personalise someone who had withdrawn consent, send a capped channel past
its cap, offer a discount to a customer who bought today, and treat a signed-in visitor's cookie
as a stranger (with caps of its own). Each is replayed through the same code the live path runs
(`IdentityMap.link`, `FeatureStore.observe_event`, `FrequencyCaps.try_take`) from what the lake
committed before the restart: the newest links (as many as the map keeps), the newest consent
event of every user ever, and today's purchases and cap-taking decisions.

Left as it was: the policies' learning (they relearn from their priors).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import NamedTuple

from decisioning import guards as gov
from decisioning.engine import FALLBACKS_AFTER_CAPS, Engine
from decisioning.identity import IdentityMap
from momento.lake.warehouse import Warehouse

# Each anonymous id's newest link, the newest `$keep` of them, oldest first (so the map keeps
# them in the order it would have).
_LINKS_SQL = """
SELECT anonymous_id, user_id FROM (
    SELECT anonymous_id, arg_max(user_id, ts) AS user_id, max(ts) AS ts FROM identities
    GROUP BY anonymous_id ORDER BY ts DESC LIMIT $keep
) ORDER BY ts
"""

# A withdrawal is an opt-out or a consent change to false; the newest consent event decides,
# and of two at the same instant the withdrawal (the lake keeps no order within an instant).
_CONSENT_SQL = """
WITH consent AS (
    SELECT user_id, ts, event_type = 'opt_out' OR NOT consent AS withdrawal FROM events
    WHERE event_type = 'opt_out' OR (event_type = 'consent_change' AND consent IS NOT NULL)
)
SELECT user_id FROM consent GROUP BY user_id HAVING arg_max(withdrawal, (ts, withdrawal))
"""

_PURCHASES_SQL = """
SELECT user_id, max(epoch_us(ts)) / 1e6 AS ts FROM events
WHERE event_type = 'purchase' AND ts >= $since GROUP BY user_id
"""

# A decision took a cap when it passed governance: it was personalised (fixed arm or policy),
# or its policy then failed and the default was served (engine.FALLBACKS_AFTER_CAPS). Counted per quarter hour (every time
# zone's offset is a multiple of 15 minutes), the local day is found in Python.
_CAPS_SQL = """
SELECT user_id, channel, epoch_us(ts) // 900000000 * 900 AS quarter, count(*) AS n FROM decisions
WHERE ts >= $since AND list_contains($capped, channel)
  AND (policy <> 'default' OR list_contains($after_caps, fallback_reason))
GROUP BY ALL
"""
_AFTER_CAPS = [code.value for code in FALLBACKS_AFTER_CAPS]
_TODAY_WITHIN_SECONDS = 25 * 3600  # today's local midnight is less than this long ago anywhere


class Recovered(NamedTuple):
    """How much was read back: identity links, users with consent withdrawn, today's buyers,
    capped user-channels."""

    links: int
    withdrawn: int
    bought_today: int
    capped: int


def recover(engine: Engine, identities: IdentityMap, warehouse: Warehouse, now: float | None = None) -> Recovered:
    """Replay into `identities` the links, and into `engine` the consent, purchases and cap
    counts, that the lake holds (see above)."""
    now = time.time() if now is None else now
    links = warehouse.query(_LINKS_SQL, {"keep": identities.capacity})
    for anonymous, customer in links.iter_rows():
        identities.link(anonymous, customer)

    today = engine.day_of(now)
    since = datetime.fromtimestamp(now - _TODAY_WITHIN_SECONDS, tz=UTC)
    store = engine.store

    withdrawn = warehouse.query(_CONSENT_SQL)
    for unit in withdrawn["user_id"]:
        store.observe_event(unit, None, "opt_out", now)

    purchases = warehouse.query(_PURCHASES_SQL, {"since": since})
    bought = 0
    for unit, ts in purchases.iter_rows():
        if engine.day_of(ts) == today:
            store.observe_event(unit, None, "purchase", ts)
            bought += 1

    taken = warehouse.query(_CAPS_SQL, {"since": since, "capped": list(engine.caps.caps), "after_caps": _AFTER_CAPS})
    users = set()
    if taken.height:
        days = gov.local_day(taken["quarter"].to_numpy(), engine.tz)
        for (unit, channel, _, n), day in zip(taken.iter_rows(), days):
            if day == today:
                for _ in range(n):
                    engine.caps.try_take(unit, channel, today)
                users.add((unit, channel))
    return Recovered(links.height, withdrawn.height, bought, len(users))
