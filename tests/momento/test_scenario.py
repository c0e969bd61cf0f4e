"""momento/scenario.py: the bundled scenario loads, and every kind of contradiction is refused on
load with the path of the bad field (never later, as a KeyError while a page renders). Each case
edits one line of the bundled file, so the rest of it stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from momento.kpis import METRICS
from momento.scenario import ScenarioError, load_scenario
from momento.settings import PROJECT_ROOT

BUNDLED = PROJECT_ROOT / "data" / "scenario.toml"


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """The bundled scenario with the first `old` replaced by `new`, written to a temp file."""
    text = BUNDLED.read_text(encoding="utf-8")
    assert old in text, f"the bundled scenario no longer contains {old!r}: update this test"
    path = tmp_path / "scenario.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _refused(path: Path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_the_bundled_scenario_loads():
    sc = load_scenario(BUNDLED)
    assert [x.id for x in sc.experiments] == [
        "exp_home_showcase",
        "exp_cart_cross_sell",
        "exp_recovery_offer",
        "exp_adaptive_cta",
    ]
    assert sc.experiment_by_id["exp_cart_cross_sell"].guardrails[0].metric == "conversion_rate"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # metrics: unknown, in each role
        (
            'primary_metric = "conversion_rate"',
            'primary_metric = "conversion"',
            "experiments.0.primary_metric: unknown metric 'conversion' (known: conversion_rate, revenue_per_user, aov, ",
        ),
        (
            'secondary_metrics = ["conversion_rate", "aov"]',
            'secondary_metrics = ["conversion_rate", "avo"]',
            "experiments.1.secondary_metrics.1: unknown metric 'avo' (known: ",
        ),
        (
            'guardrails = [{ metric = "conversion_rate", margin = 0.05 }]',
            'guardrails = [{ metric = "margin_per_usr", margin = 0.05 }]',
            "experiments.1.guardrails.0.metric: unknown metric 'margin_per_usr' (known: ",
        ),
        # a catalogue metric that is not measured on an experiment's exposed users
        (
            'primary_metric = "ctr"',
            'primary_metric = "arpu"',
            "experiments.3.primary_metric: metric 'arpu' is not measured on an experiment's exposed users "
            "(it is measured on: reached)",
        ),
        (
            'secondary_metrics = ["conversion_rate"]',
            'secondary_metrics = ["coverage"]',
            "experiments.3.secondary_metrics.0: metric 'coverage' is not measured on an experiment's exposed users",
        ),
        # names that do not resolve
        (
            'experience = "cart_cross_sell"',
            'experience = "cart_crosssell"',
            "experiments.1.experience: unknown experience 'cart_crosssell' (known: home_showcase, cart_cross_sell, "
            "recovery_offer, adaptive_cta)",
        ),
        (
            'placement = "product_cta"',
            'placement = "product_page_cta"',
            "experiences.3.placement: unknown placement 'product_page_cta' (known: homepage_showcase, cart_cross_sell, "
            "cart_recovery_offer, product_cta)",
        ),
        (
            'journey = "cart"',
            'journey = "basket"',
            "placements.1.journey: unknown journey 'basket' (known: browse, cart, recovery, conversion)",
        ),
        (
            '{ name = "treatment", share = 0.5, policy = "propensity" }',
            '{ name = "treatment", share = 0.5, variant = "gift_box" }',
            "experiments.1.arms.1.variant: unknown variant 'gift_box' of experience 'cart_cross_sell' (known: ",
        ),
        (
            "[effects.gift_guide]",
            "[effects.gift_guides]",
            "effects.gift_guides: unknown variant 'gift_guides' (known: ",
        ),
        (
            "discount = { discount_10 = 0.10, discount_15 = 0.15 }",
            "discount = { discount_10 = 0.10, discount_20 = 0.2 }",
            "experiences.2.discount.discount_20: unknown variant 'discount_20' (known: reminder, discount_10, discount_15)",
        ),
        (
            'default_variant = "buy_now"',
            'default_variant = "buy_later"',
            "experiences.3.default_variant: 'buy_later' is not among variants",
        ),
        # ids used twice, and one element claimed twice
        ('id = "cart"', 'id = "browse"', "journeys.1.id: id 'browse' is used twice"),
        (
            'id = "exp_adaptive_cta"',
            'id = "exp_home_showcase"',
            "experiments.3.id: id 'exp_home_showcase' is used twice",
        ),
        (
            'placement = "product_cta"',
            'placement = "cart_cross_sell"',
            "experiences.3.placement: placement 'cart_cross_sell' already shows experience 'cart_cross_sell'",
        ),
        (
            'experience = "adaptive_cta"',
            'experience = "recovery_offer"',
            "experiments.3.experience: experience 'recovery_offer' is already tested by experiment 'exp_recovery_offer'",
        ),
        # arms
        (
            'name = "treatment", share = 0.5, policy = "thompson"',
            'name = "treatment", share = 0.4, policy = "thompson"',
            "experiments.0.arms: arm shares add up to 0.9000, not 1",
        ),
        (
            'name = "control", share = 0.5, variant = "editorial"',
            'name = "baseline", share = 0.5, variant = "editorial"',
            "experiments.0.arms.0.name: the first arm must be named 'control'",
        ),
        (
            '{ name = "adaptive", share = 0.33, policy = "propensity" }',
            '{ name = "free_shipping", share = 0.33, policy = "propensity" }',
            "experiments.3.arms.2.name: arm name 'free_shipping' is used twice",
        ),
        (
            'name = "treatment", share = 0.5, policy = "thompson"',
            'name = "treatment", share = 0.5, policy = "bandit"',
            "experiments.0.arms.1.policy: Input should be 'rules', 'thompson' or 'propensity'",
        ),
        # the Policy lab's candidates: known kinds and variants of the experience
        (
            'policy = "rules"\nvariants = ["reminder", "discount_10", "discount_15"]',
            'policy = "rules"\nvariants = ["reminder", "discount_10", "discount_15"]\ncandidates = ["rules", "variant:discount_20"]',
            "experiences.2.candidates.1: unknown candidate 'variant:discount_20' (known: uniform, rules, thompson, greedy, "
            "propensity, split, variant:reminder, variant:discount_10, variant:discount_15)",
        ),
        # the vocabulary the engine logs
        (
            'channels = ["email", "push"]',
            'channels = ["email", "sms"]',
            "placements.2.channels.1: Input should be 'web', 'app', 'email' or 'push'",
        ),
    ],
)
def test_a_contradiction_is_refused_with_the_path_of_the_bad_field(tmp_path, old, new, expected):
    assert _refused(_edited(tmp_path, old, new)).startswith(expected)


def test_an_unknown_metric_lists_the_metrics_an_experiment_can_use(tmp_path):
    message = _refused(_edited(tmp_path, 'primary_metric = "conversion_rate"', 'primary_metric = "nope"'))
    listed = message.split("(known: ")[1].rstrip(")").split(", ")
    assert listed == [name for name, m in METRICS.items() if "exposed" in m.population]
    assert "arpu" not in listed
    assert "coverage" not in listed


def test_an_incident_naming_an_unknown_experiment_or_arm(tmp_path):
    text = BUNDLED.read_text(encoding="utf-8")
    incident = (
        '\n[[incidents]]\nname = "srm_bug"\ndescription = "x"\nat_day = 1\nhours = 2\nexperiment = "{x}"\narm = "{a}"\n'
    )
    path = tmp_path / "scenario.toml"
    path.write_text(text + incident.format(x="exp_nope", a="treatment"), encoding="utf-8")
    assert _refused(path).startswith("incidents.")
    assert ".experiment: unknown experiment 'exp_nope' (known: exp_home_showcase, " in _refused(path)
    path.write_text(text + incident.format(x="exp_home_showcase", a="variant_b"), encoding="utf-8")
    assert ".arm: unknown arm 'variant_b' of experiment 'exp_home_showcase' (known: control, treatment)" in _refused(
        path
    )


def test_unreadable_files_name_the_file(tmp_path):
    assert "no such scenario file" in _refused(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[business\nname = 1", encoding="utf-8")
    assert _refused(broken).startswith("not valid TOML")
