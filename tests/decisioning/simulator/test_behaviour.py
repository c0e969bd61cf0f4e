"""The behaviour model: effects by segment, rates, money, traffic shape and the population."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from decisioning.simulator import behaviour as bh
from momento.scenario import Scenario
from momento.settings import Settings

P_MIN = 0.001  # a fixed seed; a real mismatch gives p-values far below this


def _attrs(**values: str) -> dict[str, np.ndarray]:
    base = {"segment": "new", "device": "desktop", "region": "sul", "price_sensitivity": "medium", "style": "casual"}
    base.update(values)
    return {k: np.array([v], dtype=object) for k, v in base.items()}


def test_effects_by_segment_override_the_base_effect_of_matching_users(bundled_scenario: Scenario) -> None:
    home = bh.EffectTable(bundled_scenario, bundled_scenario.experience_by_id["home_showcase"])
    style = home.variants.index("style_affinity")
    returning = home.of(np.array([style]), _attrs(segment="returning"))[0]
    new = home.of(np.array([style]), _attrs(segment="new"))[0]
    assert returning.tolist() == [1.30, 1.14, 1.00]  # click from the base, conversion overridden
    assert new.tolist() == [1.30, 1.04, 1.00]
    cta = bh.EffectTable(bundled_scenario, bundled_scenario.experience_by_id["adaptive_cta"])
    gift = cta.variants.index("gift_message")
    assert cta.of(np.array([gift]), _attrs(device="mobile"))[0][0] == 1.25
    assert cta.of(np.array([gift]), _attrs(device="desktop"))[0][0] == 1.18
    default = cta.variants.index("buy_now")
    assert cta.of(np.array([default]), _attrs())[0].tolist() == [1.0, 1.0, 1.0]


def test_a_cart_is_bought_at_the_rate_that_makes_the_session_conversion_the_scenarios(
    bundled_scenario: Scenario,
) -> None:
    b = bundled_scenario.behaviour
    base = bh.conversion_base(b, np.array(["returning", "new"]), np.array(["high", "low"]))
    assert base == pytest.approx([b.conversion_rate * 1.35 * 0.85, b.conversion_rate * 1.15])
    given_cart = bh.purchase_given_cart(b, base, np.array([1.10, 1.0]))
    assert given_cart * b.add_to_cart_rate == pytest.approx(base * [1.10, 1.0])
    pages = b.pages_per_session_mean
    assert bh.cart_given_pages(b, pages) * (1 - np.exp(-(pages - 1))) == pytest.approx(b.add_to_cart_rate)


def test_order_values_have_the_scenarios_mean_times_the_effect(bundled_scenario: Scenario) -> None:
    b = bundled_scenario.behaviour
    z = np.random.default_rng(1).standard_normal(200_000)
    values = bh.order_value(b, z, np.full(z.size, 1.12))
    result = stats.ttest_1samp(values, b.order_value_mean * 1.12)
    assert result.pvalue > P_MIN
    assert (values > 0).all()


def test_margin_is_net_of_the_discount_and_the_discount_cost_is_what_the_customer_saved(
    bundled_scenario: Scenario,
) -> None:
    b = bundled_scenario.behaviour
    margin, cost = bh.margin_and_discount(b, np.array([90.0, 100.0]), np.array([0.10, 0.0]))
    assert cost == pytest.approx([10.0, 0.0])  # list price 100 for a 10% discount paid 90
    assert margin == pytest.approx([100 * b.margin_rate - 10.0, 100 * b.margin_rate])


def test_recovery_clicks_include_every_recovered_order(bundled_scenario: Scenario) -> None:
    b = bundled_scenario.behaviour
    multipliers = np.array([[1.35, 1.26, 0.97], [0.1, 50.0, 1.0]])
    assert (bh.recovery_click_probability(b, multipliers) >= bh.recovery_purchase_probability(multipliers[:, 1])).all()


def test_a_short_backfill_keeps_half_of_it_for_the_campaign_and_peaks_on_the_last_day(
    bundled_scenario: Scenario,
) -> None:
    traffic = bundled_scenario.traffic
    mult, pre = bh.day_multipliers(bundled_scenario, 28)
    assert pre == bundled_scenario.business.pre_period_days == 14
    assert (mult[:14] == 1.0).all() and (mult[14:-1] == traffic.campaign_multiplier).all()
    assert mult[-1] == traffic.peak_multiplier
    assert bh.day_multipliers(bundled_scenario, 3)[1] == 1


def test_sessions_follow_the_diurnal_curve(bundled_scenario: Scenario) -> None:
    population = bh.make_population(bundled_scenario, 20_000, 3, Settings.pseudonym_key)
    rng = np.random.default_rng(3)
    local_hours = (np.arange(24 * 4) + 5) % 24  # day 0 starts at 05:00 local
    starts, _ = bh.session_starts(bundled_scenario, population, 0, 4, local_hours, rng)
    hours = local_hours[starts // 3_600_000_000]
    observed = np.bincount(hours, minlength=24)
    expected = np.asarray(bundled_scenario.traffic.diurnal) * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > P_MIN
    assert (np.diff(starts) >= 0).all()


def test_the_population_follows_the_scenarios_shares_and_is_reproducible(bundled_scenario: Scenario) -> None:
    pop = bundled_scenario.population
    first = bh.make_population(bundled_scenario, 20_000, 11, Settings.pseudonym_key)
    again = bh.make_population(bundled_scenario, 20_000, 11, Settings.pseudonym_key)
    assert first.frame.equals(again.frame)
    devices = first.frame.get_column("device").value_counts()
    counts = dict(zip(devices.get_column("device"), devices.get_column("count")))
    observed = [counts.get(d, 0) for d in pop.devices]
    assert stats.chisquare(observed, [s * 20_000 for s in pop.devices.values()]).pvalue > P_MIN
    assert stats.binomtest(int(first.column("consent").sum()), 20_000, pop.consent_rate).pvalue > P_MIN
    assert first.column("user_id")[0] != "c0000000" and len(first.column("user_id")[0]) == 32
    assert bh.raw_user_id(0) == "c0000000"


def test_a_session_plan_is_consistent(bundled_scenario: Scenario) -> None:
    population = bh.make_population(bundled_scenario, 1_000, 5, Settings.pseudonym_key)
    catalogue = bh.make_catalogue(bundled_scenario, bh.catalogue_rng(5))
    rng = np.random.default_rng(5)
    users = bh.session_users(rng, population, 5_000)
    plan = bh.plan_sessions(bundled_scenario, population, catalogue, users, np.zeros(5_000, dtype=np.int64), rng)
    assert (plan["pages"] >= 1).all()
    assert not plan["cart"][plan["pages"] < 2].any()  # a cart needs a product page
    cart = plan["cart"]
    assert (plan["cart_us"][cart] >= plan["second_page_us"][cart]).all()
    assert (plan["end_us"] >= plan["cart_us"]).all()
    assert not (plan["login"] & ~plan["anonymous"]).any()
    categories = catalogue.get_column("category_code").to_numpy()
    assert (categories[plan["cart_item"]] == plan["category"]).all()  # the cart holds an item of the session's category


def test_a_customer_is_the_same_person_in_a_population_of_any_size(bundled_scenario: Scenario) -> None:
    small = bh.make_population(bundled_scenario, 500, 7, Settings.pseudonym_key).frame
    large = bh.make_population(bundled_scenario, 5_000, 7, Settings.pseudonym_key).frame
    assert small.equals(large.head(500))
    shard = bh.make_population(bundled_scenario, 1_500, 7, Settings.pseudonym_key, first=3_000).frame
    assert shard.equals(large.slice(3_000, 1_500))  # a streamed backfill's later shard: the same people


def test_person_effects_equal_the_effect_table_row_by_row(bundled_scenario: Scenario) -> None:
    population = bh.make_population(bundled_scenario, 3_000, 2, Settings.pseudonym_key)
    experience = bundled_scenario.experience_by_id["adaptive_cta"]
    expected = bh.EffectTable(bundled_scenario, experience).all_variants(bh.attributes(population, np.arange(3_000)))
    assert np.array_equal(bh.person_effects(bundled_scenario, experience, population), expected)
