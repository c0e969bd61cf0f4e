"""The decision flow in-process: allocation, governance, fallbacks, logging, learning."""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pytest
from scipy import stats

from decisioning import flow
from decisioning.assignment import HOLDOUT, assign_arm, in_holdout
from decisioning.engine import Context, Decision, DecisionLog, Engine, Faults, UnknownPlacement
from decisioning.features import FEATURE_NAMES
from decisioning.identity import customer_unit
from momento.codes import POLICY_CODES, Code
from momento.lake.schema import to_table
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter, QueueFull

KEY = "test-key"
NOW = 1_781_000_000.0  # a fixed instant (June 2026), so days and caps are reproducible


def _unit(scenario, experiment_id: str | None, arm: str) -> str:
    """A pseudonymised user outside the holdout and in `arm` of the experiment (or the holdout)."""
    experiment = scenario.experiment_by_id.get(experiment_id) if experiment_id else None
    for i in itertools.count():
        unit = customer_unit(f"user-{arm}-{i}", KEY)
        if arm == HOLDOUT:
            if in_holdout(unit, scenario.population):
                return unit
        elif not in_holdout(unit, scenario.population) and assign_arm(unit, experiment) == arm:
            return unit


def _ctx(unit: str, placement: str, channel: str = "web", **extra) -> Context:
    return Context(
        unit=unit,
        placement=placement,
        channel=channel,
        consent=extra.pop("consent", True),
        session_id=extra.pop("session_id", "s1"),
        device="mobile",
        now=extra.pop("now", NOW),
        **extra,
    )


@pytest.fixture
def engine(scenario) -> Engine:
    """An engine whose decision budget a stall of this shared machine cannot exceed (the budget
    has its own test), so each test sees the decision it sets up."""
    return Engine(scenario, seed=7, budget_ms=1_000.0)


def test_holdout_and_arm_shares_match_the_configuration_on_10k_users(scenario, engine):
    units = [customer_unit(f"visitor-{i}", KEY) for i in range(10_000)]
    holdout = scenario.population.holdout_share
    for experiment in scenario.experiments:
        experience = scenario.experience_by_id[experiment.experience]
        placement = experience.placement
        channel = scenario.placement_by_id[placement].channels[0]
        arms = [engine.decide(_ctx(u, placement, channel, consent=False)).arm for u in units]
        names = [HOLDOUT, *(arm.name for arm in experiment.arms)]
        observed = np.array([arms.count(name) for name in names])
        expected = np.array([holdout, *((1 - holdout) * arm.share for arm in experiment.arms)]) * len(units)
        assert observed.sum() == len(units)
        assert stats.chisquare(observed, expected).pvalue > 0.001, (experiment.id, observed, expected)


def test_assignment_is_sticky_and_the_holdout_never_gets_a_personalised_decision(scenario, engine):
    unit = _unit(scenario, None, HOLDOUT)
    for placement, channel in [("homepage_showcase", "web"), ("cart_recovery_offer", "email"), ("product_cta", "app")]:
        decisions = [engine.decide(_ctx(unit, placement, channel, now=NOW + i)) for i in range(5)]
        assert {d.arm for d in decisions} == {HOLDOUT}
        assert all(d.reasons == [Code.HOLDOUT] and d.policy == "default" and not d.fallback for d in decisions)
    treated = _unit(scenario, "exp_home_showcase", "treatment")
    assert {engine.decide(_ctx(treated, "homepage_showcase", now=NOW + i)).arm for i in range(5)} == {"treatment"}


def test_control_fixed_and_policy_arms(scenario, engine):
    control = engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "control"), "product_cta"))
    assert (control.variant, control.policy, control.reasons, control.fallback) == (
        "buy_now",
        "default",
        [Code.CONTROL_ARM],
        False,
    )
    fixed = engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "free_shipping"), "product_cta"))
    assert (fixed.variant, fixed.policy, fixed.propensity, fixed.reasons) == (
        "free_shipping",
        "fixed",
        1.0,
        [Code.FIXED_ARM],
    )
    adaptive = engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "adaptive"), "product_cta"))
    assert adaptive.policy == "propensity" and adaptive.reasons == [Code.POLICY_PROPENSITY]
    assert 0 < adaptive.propensity < 1 and adaptive.model_version.startswith("propensity-")
    showcase = engine.decide(_ctx(_unit(scenario, "exp_home_showcase", "treatment"), "homepage_showcase"))
    assert showcase.policy == "thompson" and showcase.propensity == pytest.approx(0.25)  # uniform prior, 4 arms


def test_decision_rows_fit_the_decisions_table(scenario, engine):
    rows = [
        engine.decide(_ctx(customer_unit(f"r{i}", KEY), p)).row()
        for i in range(30)
        for p in ("homepage_showcase", "cart_cross_sell", "product_cta")
    ]
    table = to_table("decisions", rows)
    assert table.num_rows == 90 and table.column("reasons").null_count == 0


def _distribution(decision: Decision) -> dict[str, float]:
    return {entry["variant"]: entry["p"] for entry in decision.action_probabilities}


def test_a_policys_decision_logs_the_distribution_it_was_drawn_from_and_the_features_it_saw(scenario, engine):
    for experiment_id, arm, placement in [
        ("exp_home_showcase", "treatment", "homepage_showcase"),
        ("exp_adaptive_cta", "adaptive", "product_cta"),
        ("exp_recovery_offer", "treatment", "cart_recovery_offer"),
    ]:
        channel = "email" if placement == "cart_recovery_offer" else "web"
        decision = engine.decide(
            _ctx(_unit(scenario, experiment_id, arm), placement, channel, pages_viewed=3, price_sensitivity="high")
        )
        distribution = _distribution(decision)
        assert decision.policy in POLICY_CODES, decision.reasons
        assert list(distribution) == scenario.experience_by_id[decision.experience_id].variants
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-12)
        assert decision.propensity == distribution[decision.variant] > 0  # the very number logged
        assert len(decision.context) == len(FEATURE_NAMES) and decision.context_version == flow.CONTEXT_VERSION
        assert decision.context[FEATURE_NAMES.index("bias")] == 1.0
        assert decision.context[FEATURE_NAMES.index("price_sensitivity")] == 1.0  # high
    assert set(
        _distribution(
            engine.decide(_ctx(_unit(scenario, "exp_home_showcase", "treatment"), "homepage_showcase"))
        ).values()
    ) == {0.25}  # Thompson's uniform prior


def test_a_decision_no_policy_drew_logs_the_point_mass_on_what_it_served_and_no_context(scenario, engine):
    unit = _unit(scenario, "exp_adaptive_cta", "adaptive")
    decisions = [
        engine.decide(_ctx(_unit(scenario, None, HOLDOUT), "product_cta")),
        engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "control"), "product_cta")),
        engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "free_shipping"), "product_cta")),
        engine.decide(_ctx(unit, "product_cta", consent=False)),
        engine.decide(_ctx(unit, "product_cta"), incidents={"model_outage"}),
    ]
    assert [d.reasons[0] for d in decisions] == [
        Code.HOLDOUT,
        Code.CONTROL_ARM,
        Code.FIXED_ARM,
        Code.NO_CONSENT,
        Code.MODEL_UNAVAILABLE,
    ]
    for d in decisions:
        assert _distribution(d) == {v: float(v == d.variant) for v in ("buy_now", "free_shipping", "gift_message")}
        assert d.propensity == 1.0 and d.context is None and d.context_version is None


def test_the_logged_rows_propensities_are_their_distributions_in_the_lake(scenario, engine, tmp_path):
    """Through the service's decision log into the lake, read back with SQL: every distribution
    sums to 1, the served variant's probability is the logged propensity, and only a policy's
    decisions carry a context."""
    writer = LakeWriter(tmp_path, background=False, compact_every_seconds=None)
    log = DecisionLog(writer, interval_seconds=3600)
    for i in range(400):
        placement, channel = [
            ("homepage_showcase", "web"),
            ("product_cta", "app"),
            ("cart_cross_sell", "web"),
            ("cart_recovery_offer", "email"),
        ][i % 4]
        incidents = {"model_outage"} if i % 7 == 0 else set()
        log.add(
            [
                engine.decide(
                    _ctx(customer_unit(f"lake-{i}", KEY), placement, channel, consent=i % 9 != 0, now=NOW + i),
                    incidents,
                ).row()
            ]
        )
    log.close()
    writer.close()
    checks = (
        Warehouse(tmp_path)
        .query(
            """
        SELECT count(*) AS decisions,
               count(*) FILTER (WHERE abs(list_sum([a.p FOR a IN action_probabilities]) - 1) > 1e-9) AS not_one,
               count(*) FILTER (WHERE propensity <> [a.p FOR a IN action_probabilities IF a.variant = variant][1])
                   AS propensity_differs,
               count(*) FILTER (WHERE (context IS NOT NULL) <> (policy IN ('rules', 'thompson', 'propensity')))
                   AS context_not_of_a_policy,
               count(*) FILTER (WHERE len(context) = $features AND context_version = $version) AS with_context,
               count(DISTINCT policy) AS policies
        FROM decisions""",
            {"features": len(FEATURE_NAMES), "version": flow.CONTEXT_VERSION},
        )
        .row(0, named=True)
    )
    assert checks["decisions"] == 400 and checks["policies"] == 5 and checks["with_context"] > 50
    assert checks["not_one"] == checks["propensity_differs"] == checks["context_not_of_a_policy"] == 0


def test_no_consent_or_a_withdrawal_serves_the_default(scenario, engine):
    unit = _unit(scenario, "exp_home_showcase", "treatment")
    refused = engine.decide(_ctx(unit, "homepage_showcase", consent=False))
    assert (refused.variant, refused.fallback, refused.fallback_reason, refused.consent) == (
        "editorial",
        True,
        Code.NO_CONSENT,
        False,
    )
    assert engine.decide(_ctx(unit, "homepage_showcase")).policy == "thompson"
    engine.store.observe_event(unit, "s1", "consent_change", NOW, consent=False)
    withdrawn = engine.decide(_ctx(unit, "homepage_showcase"))  # the client still says yes
    assert withdrawn.fallback_reason == Code.NO_CONSENT and withdrawn.consent is False
    engine.store.observe_event(unit, "s1", "consent_change", NOW + 1, consent=True)
    assert engine.decide(_ctx(unit, "homepage_showcase")).policy == "thompson"


def test_governance_fallbacks(scenario, engine):
    offer = _unit(scenario, "exp_recovery_offer", "treatment")
    wrong_channel = engine.decide(_ctx(offer, "cart_recovery_offer", "web"))
    assert wrong_channel.fallback_reason == Code.CHANNEL_NOT_SERVED and wrong_channel.variant == "reminder"
    stock = engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "adaptive"), "product_cta", in_stock=False))
    assert stock.fallback_reason == Code.OUT_OF_STOCK
    engine.store.observe_event(offer, "s1", "purchase", NOW - 60, revenue=200.0)
    bought = engine.decide(_ctx(offer, "cart_recovery_offer", "email", price_sensitivity="high"))
    assert bought.fallback_reason == Code.BOUGHT_TODAY and bought.variant == "reminder"
    tomorrow = engine.decide(_ctx(offer, "cart_recovery_offer", "email", price_sensitivity="high", now=NOW + 86_400))
    assert (tomorrow.policy, tomorrow.variant) == ("rules", "discount_15")


def test_frequency_cap_per_user_channel_and_day(scenario, engine):
    unit = _unit(scenario, "exp_recovery_offer", "treatment")
    push = [engine.decide(_ctx(unit, "cart_recovery_offer", "push", now=NOW + i)) for i in range(4)]
    assert [d.fallback_reason for d in push] == [None, None, Code.FREQUENCY_CAP, Code.FREQUENCY_CAP]
    assert engine.decide(_ctx(unit, "cart_recovery_offer", "email")).policy == "rules"  # another channel
    assert engine.decide(_ctx(unit, "cart_recovery_offer", "push", now=NOW + 86_400)).policy == "rules"


def test_budget_model_and_error_faults_serve_the_default(scenario):
    engine = Engine(scenario, seed=1, faults=Faults(latency_spike_ms=15.0, error_share=1.0))
    showcase = _unit(scenario, "exp_home_showcase", "treatment")
    slow = engine.decide(_ctx(showcase, "homepage_showcase"), incidents={"latency_spike"})
    assert slow.fallback_reason == Code.BUDGET_EXCEEDED and slow.status == "ok" and slow.latency_us >= 15_000
    cta = _unit(scenario, "exp_adaptive_cta", "adaptive")
    outage = engine.decide(_ctx(cta, "product_cta"), incidents={"model_outage"})
    assert outage.fallback_reason == Code.MODEL_UNAVAILABLE and outage.variant == "buy_now"
    assert engine.decide(_ctx(showcase, "homepage_showcase"), incidents={"model_outage"}).policy == "thompson"
    burst = engine.decide(_ctx(showcase, "homepage_showcase"), incidents={"error_burst"})
    assert (burst.status, burst.error_code, burst.variant, burst.fallback) == (
        "error",
        Code.INTERNAL_ERROR,
        "editorial",
        True,
    )


class _BrokenPolicy:
    """A policy whose model raises, as a corrupt model would."""

    name = "propensity"
    model_version = "broken"

    def probabilities(self, X, eligible):
        raise FloatingPointError("weights are NaN")

    def update(self, X, chosen, reward):
        raise AssertionError("never called")


def test_a_model_error_serves_the_default_never_an_exception(scenario, engine):
    engine.policies[("adaptive_cta", "propensity")] = _BrokenPolicy()
    decision = engine.decide(_ctx(_unit(scenario, "exp_adaptive_cta", "adaptive"), "product_cta"))
    assert (decision.fallback_reason, decision.variant, decision.status) == (Code.MODEL_ERROR, "buy_now", "ok")


def test_unknown_placement_is_the_only_exception(engine):
    with pytest.raises(UnknownPlacement, match="unknown placement 'nowhere'"):
        engine.decide(_ctx("abc", "nowhere"))


def test_outcomes_update_the_policy_once_and_silence_counts_as_failure(scenario):
    engine = Engine(scenario, seed=3, attribution_seconds=60.0, budget_ms=1_000.0)
    policy = engine.policies[("home_showcase", "thompson")]
    units = [_unit(scenario, "exp_home_showcase", "treatment")]
    decisions = [engine.decide(_ctx(units[0], "homepage_showcase", now=NOW + i)) for i in range(6)]
    assert engine.record_outcome(decisions[0].decision_id, "click")
    assert not engine.record_outcome(decisions[0].decision_id, "purchase")  # rewarded once
    assert not engine.record_outcome(decisions[1].decision_id, "page_view")  # not an outcome
    assert engine.learn(now=NOW + 10) == 1
    alpha, beta = policy.posterior
    assert alpha.sum() == 4 + 1 and beta.sum() == 4
    assert engine.learn(now=NOW + 120) == 5  # the other five passed their window unrewarded
    alpha, beta = policy.posterior
    assert alpha.sum() == 5 and beta.sum() == 9
    assert engine.recall(decisions[2].decision_id) is None


def test_erase_forgets_the_user_in_memory(scenario, engine):
    unit = _unit(scenario, "exp_recovery_offer", "treatment")
    first = engine.decide(_ctx(unit, "cart_recovery_offer", "email"))
    assert engine.decide(_ctx(unit, "cart_recovery_offer", "email")).fallback_reason == Code.FREQUENCY_CAP
    engine.erase(unit)
    assert engine.recall(first.decision_id) is None and engine.store.row(unit, "s1", NOW) == {}
    assert engine.decide(_ctx(unit, "cart_recovery_offer", "email")).fallback_reason is None


def test_state_kept_between_decisions_is_invisible_to_the_cycle_collector(scenario, engine):
    """Users, sessions and recent decisions are held in containers the cycle collector stops
    tracking: otherwise every full collection scans them all, a pause that grows with traffic."""
    gc.collect()
    before = len(gc.get_objects())
    for i in range(3_000):
        unit = customer_unit(f"gc-{i}", KEY)
        decision = engine.decide(_ctx(unit, "homepage_showcase", session_id=f"s{i}", category="vestidos"))
        engine.store.observe_event(unit, f"s{i}", "purchase", NOW, revenue=10.0, category="vestidos")
        engine.record_outcome(decision.decision_id, "click")
    gc.collect()
    assert len(engine.store) == 3_000 and engine.recall(decision.decision_id) is not None
    assert len(gc.get_objects()) - before < 100


def test_decision_log_batches_rows_and_keeps_them_when_the_writer_is_full(scenario, engine, tmp_path):
    writer = LakeWriter(
        tmp_path / "lake", queue_limit=5, flush_seconds=3600, compact_every_seconds=None, background=False
    )
    log = DecisionLog(writer, interval_seconds=3600)
    try:
        rows = [engine.decide(_ctx(customer_unit(f"l{i}", KEY), "homepage_showcase")).row() for i in range(8)]
        assert log.has_room(5) and not log.has_room(6)
        log.add(rows[:4])
        log.drain()
        assert writer.stats.queued_rows == 4 and log.pending == 0
        log.add(rows[4:])
        assert not log.has_room()
        with pytest.raises(QueueFull):
            log.drain()
        assert log.pending == 4  # nothing dropped
        writer.flush()
        log.drain()
        writer.flush()
        assert writer.stats.committed_rows == 8
    finally:
        log.close()
        writer.close()
