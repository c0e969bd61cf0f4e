"""The one model of how visitors behave; the backfill and the live simulator both draw from it.

Everything is vectorised over numpy arrays (a whole backfill at once, or one live session with
n = 1). The scenario gives the rates (`[behaviour]`, `[traffic]`, `[population]`) and the true
effects; the few shapes the scenario does not describe are the constants below.

The model, per session (a visit on web or app):
- page 1 is the homepage (showcase decision), page 2 the first product page (call-to-action
  decision); a shown placement is seen with `SEEN_RATE` and a seen one is clicked with
  `click_rate` x the variant's click effect;
- sessions of 2+ pages add to cart with a probability chosen so the overall rate is
  `add_to_cart_rate` (cross-sell decision in the cart); a cart is bought with probability
  `conversion / add_to_cart_rate`, where the session's conversion is the user's base rate
  (returning, price sensitivity) times the conversion effects of the variants seen;
- an abandoned cart triggers an e-mail (web) or push (app) recovery message hours later to
  reachable customers (identified, consenting); an opened message is clicked and bought with
  probabilities scaled by the offer's effects, and a discount costs margin;
- orders are log-normal around `order_value_mean` times the order-value effects; a share is
  returned days later; some sessions answer NPS or withdraw consent.
The probabilities here are also what `truth` averages to get the true effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast, overload

import numpy as np
import polars as pl

from decisioning.identity import customer_unit
from momento.scenario import Behaviour, Experience, Scenario

SEEN_RATE = 0.9
"""Share of web/app decisions whose placement actually reaches the screen (an exposure)."""
RECOVERY_CONVERSION = 0.06
"""Chance an opened recovery message leads to an order, before the offer's effect."""
RECOVERY_DELAY_HOURS = (1.0, 6.0)
"""A recovery message goes out uniformly this many hours after the abandoned session."""
OPEN_DELAY_MINUTES = 40.0
"""Mean delay between a recovery message and its opening (exponential)."""
RETURN_DELAY_DAYS = (2.0, 14.0)
PAGE_GAP_SECONDS = 45.0
CHECKOUT_SECONDS = 150.0
APP_SHARE = {"mobile": 0.55, "tablet": 0.35, "desktop": 0.0}
REFERRERS = {"direct": 0.35, "search": 0.35, "social": 0.20, "email": 0.10}
ACTIVITY_SHAPE = 1.5
"""Gamma shape of users' activity (how often each visits): heavy users make CUPED useful."""
NPS_SD = 1.8
ATTRIBUTES = ("segment", "device", "region", "price_sensitivity", "style")
"""User attributes a `by_segment` effect may name (by value: `returning`, `mobile`, `high`...)."""

_MICROS = 1_000_000


@overload
def raw_user_id(index: int) -> str: ...
@overload
def raw_user_id(index: np.ndarray) -> np.ndarray: ...
def raw_user_id(index: np.ndarray | int) -> np.ndarray | str:
    """The customer id a client sends for population member `index` (the service pseudonymises it)."""
    if isinstance(index, (int, np.integer)):
        return f"c{int(index):07d}"
    return np.array([f"c{int(i):07d}" for i in index], dtype=object)


def draw_codes(rng: np.random.Generator, shares: Mapping[str, float], n: int) -> np.ndarray:
    """`n` indices into `list(shares)`, drawn with the given shares."""
    p = np.array(list(shares.values()), dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def draw(rng: np.random.Generator, shares: Mapping[str, float], n: int) -> np.ndarray:
    """`n` keys of `shares` (an object array), drawn with the given shares."""
    return cast(np.ndarray, np.array(list(shares), dtype=object)[draw_codes(rng, shares, n)])


class Population:
    """The simulated customers: one row each, attributes fixed for the whole simulation.

    `frame` columns: raw_id, user_id (pseudonymised, as stored), segment (new/returning),
    device, region, price_sensitivity, style, consent (initial), activity (relative visit rate).
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self._columns: dict[str, np.ndarray] = {}

    @property
    def size(self) -> int:
        return self.frame.height

    def column(self, name: str) -> np.ndarray:
        """A column as numpy (converted once)."""
        if name not in self._columns:
            self._columns[name] = self.frame.get_column(name).to_numpy()
        return self._columns[name]


def make_population(scenario: Scenario, users: int, seed: int, key: str, first: int = 0) -> Population:
    """Draw `users` customers from the scenario's population shares (deterministic in `seed`):
    customers `first` to `first + users - 1`.

    Each attribute has its own random stream, so customer i is the same person in a population
    of any size: a live run over the scenario's users continues a smaller backfill's customers,
    and a backfill streamed in shards of customers (`first` > 0) draws the same people."""
    pop = scenario.population

    def stream(attribute: int) -> np.random.Generator:
        """The attribute's stream from customer `first` on: a uniform draw (and a draw with
        shares) takes one 64-bit output per customer, so the first ones are skipped at once."""
        bits = np.random.PCG64([seed, 1, attribute])  # default_rng's bit generator
        bits.advance(first)
        return np.random.Generator(bits)

    raw = raw_user_id(np.arange(first, first + users))
    return Population(
        pl.DataFrame(
            {
                "raw_id": raw,
                "user_id": [customer_unit(r, key) for r in raw],
                "segment": np.where(stream(0).random(users) < pop.returning_share, "returning", "new"),
                "device": draw(stream(1), pop.devices, users),
                "region": draw(stream(2), pop.regions, users),
                "price_sensitivity": draw(stream(3), pop.price_sensitivity, users),
                "style": draw(stream(4), pop.styles, users),
                "consent": stream(5).random(users) < pop.consent_rate,
                # a gamma draw takes a varying number of outputs: the first customers' are drawn
                "activity": np.random.default_rng([seed, 1, 6]).gamma(
                    ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE, first + users
                )[first:],
            },
            schema_overrides={
                "raw_id": pl.String,
                "user_id": pl.String,
                "segment": pl.String,
                "device": pl.String,
                "region": pl.String,
                "price_sensitivity": pl.String,
                "style": pl.String,
            },
        )
    )


# -- true effects -------------------------------------------------------------------------------

EFFECT_KINDS = ("click", "conversion", "order_value")


class EffectTable:
    """The scenario's true effects for one experience's variants, resolved per user.

    `by_segment` overrides the variant's base multiplier for users whose attribute (any of
    `ATTRIBUTES`) has that value; when several match, the scenario's first listed wins.
    """

    def __init__(self, scenario: Scenario, experience: Experience) -> None:
        self.variants = list(experience.variants)
        self._effects = [scenario.effect(v) for v in self.variants]

    def all_variants(self, attrs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Multipliers of every variant for every row: (n, k, 3) over `EFFECT_KINDS`."""
        n = len(next(iter(attrs.values())))
        out = np.ones((n, len(self.variants), len(EFFECT_KINDS)))
        for v, effect in enumerate(self._effects):
            base = np.array([getattr(effect, kind) for kind in EFFECT_KINDS])
            out[:, v, :] = base
            overridden = np.zeros((n, len(EFFECT_KINDS)), dtype=bool)
            for value, override in effect.by_segment.items():
                match = np.zeros(n, dtype=bool)
                for attribute in ATTRIBUTES:
                    match |= attrs[attribute] == value
                for j, kind in enumerate(EFFECT_KINDS):
                    if kind in override:
                        rows = match & ~overridden[:, j]
                        out[rows, v, j] = override[kind]
                        overridden[rows, j] = True
        return out

    def of(self, variant: np.ndarray, attrs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Multipliers of the variant shown in each row: (n, 3)."""
        table = self.all_variants(attrs)
        return table[np.arange(len(variant)), np.asarray(variant, dtype=np.int64)]


def person_effects(scenario: Scenario, experience: Experience, population: Population) -> np.ndarray:
    """Every person's true effects of every variant: (people, variants, 3). Computed once per
    distinct combination of attributes (a few hundred) and spread to the people."""
    frame = population.frame.select(ATTRIBUTES)
    combos = frame.unique(maintain_order=True).with_row_index("combo")
    index = frame.join(combos, on=list(ATTRIBUTES), how="left", maintain_order="left").get_column("combo").to_numpy()
    table = EffectTable(scenario, experience).all_variants({a: combos.get_column(a).to_numpy() for a in ATTRIBUTES})
    return cast(np.ndarray, table[index])


# -- rates ----------------------------------------------------------------------------------------


def conversion_base(behaviour: Behaviour, segment: np.ndarray, price_sensitivity: np.ndarray) -> np.ndarray:
    """A session's chance to end in an order before any personalisation effect."""
    returning = np.where(segment == "returning", behaviour.returning_conversion_multiplier, 1.0)
    levels = behaviour.price_sensitivity_conversion
    sensitivity = np.select([price_sensitivity == level for level in levels], list(levels.values()), default=1.0)
    return cast(np.ndarray, behaviour.conversion_rate * returning * sensitivity)


def cart_given_pages(behaviour: Behaviour, pages_mean: float) -> float:
    """Chance a session of 2+ pages adds to cart, so that the overall rate is `add_to_cart_rate`."""
    multi_page: float = 1.0 - np.exp(-(pages_mean - 1.0))
    return min(1.0, behaviour.add_to_cart_rate / multi_page)


def purchase_given_cart(behaviour: Behaviour, base: np.ndarray, conversion_multiplier: np.ndarray) -> np.ndarray:
    """Chance a cart is bought in the session."""
    return cast(np.ndarray, np.minimum(1.0, base * conversion_multiplier / behaviour.add_to_cart_rate))


def click_probability(behaviour: Behaviour, click_multiplier: np.ndarray) -> np.ndarray:
    """Chance a seen web/app placement is clicked."""
    return np.minimum(1.0, behaviour.click_rate * click_multiplier)


def open_probability(behaviour: Behaviour, channel: np.ndarray) -> np.ndarray:
    """Chance a recovery message is opened (its exposure)."""
    return np.where(channel == "push", behaviour.push_open_rate, behaviour.email_open_rate)


def recovery_purchase_probability(conversion_multiplier: np.ndarray) -> np.ndarray:
    """Chance an opened recovery message leads to an order."""
    return np.minimum(1.0, RECOVERY_CONVERSION * conversion_multiplier)


def recovery_click_probability(behaviour: Behaviour, multipliers: np.ndarray) -> np.ndarray:
    """Chance an opened recovery message is clicked (every recovered order clicked first)."""
    return cast(
        np.ndarray,
        np.maximum(
            np.minimum(1.0, behaviour.email_click_rate * multipliers[..., 0]),
            recovery_purchase_probability(multipliers[..., 1]),
        ),
    )


def order_value_mean(behaviour: Behaviour, order_value_multiplier: np.ndarray) -> np.ndarray:
    """Expected revenue of an order (BRL)."""
    return behaviour.order_value_mean * order_value_multiplier


def order_value(behaviour: Behaviour, z: np.ndarray, order_value_multiplier: np.ndarray) -> np.ndarray:
    """Revenue of an order from a standard normal draw `z`: log-normal with the expected mean."""
    sigma = behaviour.order_value_sigma
    return order_value_mean(behaviour, order_value_multiplier) * np.exp(sigma * z - sigma**2 / 2)


def margin_and_discount(
    behaviour: Behaviour, revenue: np.ndarray, discount: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An order's margin net of discount and the discount's cost: the customer paid `revenue`
    after a `discount` share off the list price; margin is `margin_rate` of list minus the cost."""
    list_price = revenue / (1.0 - discount)
    cost = list_price - revenue
    return list_price * behaviour.margin_rate - cost, cost


def nps_score(behaviour: Behaviour, z: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(behaviour.nps_mean + NPS_SD * z), 0, 10).astype(np.int8)


# -- traffic and sessions -----------------------------------------------------------------------


def day_multipliers(scenario: Scenario, days: int) -> tuple[np.ndarray, int]:
    """Traffic multiplier of each backfilled day and the number of pre-campaign days.

    The pre-period is the scenario's `pre_period_days`, shortened to half the backfill when the
    backfill is shorter, so a short backfill still has a campaign; the last day is the peak.
    """
    pre = min(scenario.business.pre_period_days, days // 2)
    traffic = scenario.traffic
    mult = np.where(np.arange(days) < pre, 1.0, traffic.campaign_multiplier)
    if days > pre:
        mult[-1] = traffic.peak_multiplier
    return mult, pre


def session_starts(
    scenario: Scenario,
    population: Population,
    start_us: int,
    days: int,
    local_hours: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Sorted session start times over `days` from `start_us`, following the diurnal curve at
    each hour's local time (`local_hours`, one per hour) and the campaign's ramp; and the
    number of pre-campaign days."""
    mult, pre = day_multipliers(scenario, days)
    weights = np.asarray(scenario.traffic.diurnal)[local_hours] * np.repeat(mult, 24)
    activity = cast(float, population.frame.get_column("activity").sum())  # a float column (polars types any sum)
    expected = activity * scenario.traffic.sessions_per_user_day * weights
    hour_of = np.repeat(np.arange(days * 24, dtype=np.int64), rng.poisson(expected))
    starts = start_us + ((hour_of + rng.random(hour_of.size)) * 3600 * _MICROS).astype(np.int64)
    return np.sort(starts), pre


def session_users(rng: np.random.Generator, population: Population, n: int) -> np.ndarray:
    """Which population member each of `n` sessions belongs to (in proportion to activity)."""
    activity = population.column("activity")
    return rng.choice(population.size, size=n, p=activity / activity.sum())


def catalogue_rng(seed: int) -> np.random.Generator:
    """The generator the catalogue is drawn with, so every mode sees the same shop for a seed."""
    return np.random.default_rng([seed, 2])


def make_catalogue(scenario: Scenario, rng: np.random.Generator) -> pl.DataFrame:
    """The shop's items: item_id, category (and its index in the scenario's categories) and
    price (uniform within the item's price band)."""
    n = scenario.catalogue.items
    band = draw(rng, scenario.catalogue.price_bands, n)
    low = np.array([PRICE_BANDS.get(b, (50.0, 300.0))[0] for b in band])
    high = np.array([PRICE_BANDS.get(b, (50.0, 300.0))[1] for b in band])
    code = draw_codes(rng, scenario.catalogue.categories, n)
    return pl.DataFrame(
        {
            "item_id": [f"item-{i:05d}" for i in range(n)],
            "category": pl.Series(list(scenario.catalogue.categories), dtype=pl.String).gather(code),
            "category_code": code,
            "price": np.round(rng.uniform(low, high), 2),
        }
    )


PRICE_BANDS = {"ate_100": (40.0, 100.0), "de_100_a_300": (100.0, 300.0), "acima_300": (300.0, 800.0)}
"""Price range (BRL) of each price band the scenario's catalogue names."""


def items_in(catalogue: pl.DataFrame, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random item (row of `catalogue`) of each row's category (index in the scenario's)."""
    codes = catalogue.get_column("category_code").to_numpy()
    out = rng.integers(0, len(codes), len(category))
    for value in range(int(codes.max()) + 1):
        pool = np.flatnonzero(codes == value)
        rows = np.flatnonzero(category == value)
        if pool.size and rows.size:
            out[rows] = pool[rng.integers(0, pool.size, rows.size)]
    return out


def plan_sessions(
    scenario: Scenario,
    population: Population,
    catalogue: pl.DataFrame,
    users: np.ndarray,
    starts_us: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Everything about sessions that no decision can change, drawn up front.

    One entry per session: who (population index), when, on which channel, how many pages, the
    timing of the second page, the cart and the end (µs offsets from the start), and the
    uniform draws that settle what happens once the variants are known (seen, clicked, bought,
    order value, recovery message, return, NPS, consent). (n, 3) arrays are per in-session
    placement: homepage, product page, cart.
    """
    b = scenario.behaviour
    pop = scenario.population
    n = len(users)
    device = population.column("device")[users]
    app = rng.random(n) < np.array([APP_SHARE.get(d, 0.0) for d in device])
    pages = 1 + rng.poisson(b.pages_per_session_mean - 1.0, n)
    gap = rng.exponential(PAGE_GAP_SECONDS * _MICROS, (n, 2))
    duration = np.maximum((pages - 1) * PAGE_GAP_SECONDS * _MICROS * rng.uniform(0.5, 1.5, n), gap[:, 0])
    anonymous = rng.random(n) < pop.anonymous_session_share
    category = draw_codes(rng, scenario.catalogue.categories, n)
    return {
        "user": users.astype(np.int64),
        "ts": starts_us.astype(np.int64),
        "channel": np.where(app, "app", "web").astype(object),
        "referrer": draw(rng, REFERRERS, n),
        "pages": pages.astype(np.int64),
        "second_page_us": gap[:, 0].astype(np.int64),
        "cart_us": (gap[:, 0] + rng.random(n) * (duration - gap[:, 0])).astype(np.int64),
        "end_us": (duration + gap[:, 1]).astype(np.int64),
        "anonymous": anonymous,
        "login": anonymous & (rng.random(n) < pop.login_rate),
        "cart": (pages >= 2) & (rng.random(n) < cart_given_pages(b, b.pages_per_session_mean)),
        "category": category,  # index into the scenario's categories
        "cart_item": items_in(catalogue, category, rng),
        "seen": rng.random((n, 3)) < SEEN_RATE,
        "in_stock": rng.random((n, 3)) >= b.stockout_rate,
        "u_click": rng.random((n, 3)),
        "u_buy": rng.random(n),
        "z_value": rng.standard_normal(n),
        "checkout_us": rng.exponential(CHECKOUT_SECONDS * _MICROS, n).astype(np.int64),
        "u_return": rng.random(n),
        "return_us": (rng.uniform(*RETURN_DELAY_DAYS, n) * 86_400 * _MICROS).astype(np.int64),
        "message_us": (rng.uniform(*RECOVERY_DELAY_HOURS, n) * 3600 * _MICROS).astype(np.int64),
        "open_us": rng.exponential(OPEN_DELAY_MINUTES * 60 * _MICROS, n).astype(np.int64),
        "u_open": rng.random(n),
        "u_message": rng.random(n),
        "u_opt_out": rng.random(n),
        "nps": rng.random(n) < b.nps_response_rate,
        "nps_z": rng.standard_normal(n),
        "withdraw": rng.random(n) < b.consent_withdrawal_rate,
    }


def attributes(population: Population, users: np.ndarray) -> dict[str, np.ndarray]:
    """The `ATTRIBUTES` of each row's user (for effects by segment)."""
    return {name: population.column(name)[users] for name in ATTRIBUTES}


def discounts(experience: Experience) -> np.ndarray:
    """Each variant's discount share (0 for no discount)."""
    return np.array([experience.discount.get(v, 0.0) for v in experience.variants])
