"""False alarms: on A/A traffic watched continuously (20 looks a run), the share of runs in which
the guardrail or harmful-arm rule ever fires stays at or below alpha: the rules read always-valid
intervals, so watching every few seconds does not inflate it. Pure and fast (numbers only)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from metrics import stats
from metrics.monitors.evaluate import ExperimentNumbers, Numbers, evaluate
from metrics.monitors.rules import parse_monitors

RUNS, LOOKS, USERS_PER_LOOK, RATE, MARGIN, ALPHA = 400, 20, 100, 0.1, 0.05, 0.05


def test_aa_runs_watched_at_every_look_rarely_alert():
    guardrail, harmful = parse_monitors(
        {
            "rules": [
                {"name": "guard", "kind": "guardrail", "alpha": ALPHA},
                {"name": "harm", "kind": "harmful_arm", "alpha": ALPHA},
            ]
        }
    ).rules
    rng = np.random.default_rng(20260612)
    # cumulative conversions of each arm at each look, the same true rate in both arms
    control = rng.binomial(USERS_PER_LOOK, RATE, size=(RUNS, LOOKS)).cumsum(axis=1)
    treatment = rng.binomial(USERS_PER_LOOK, RATE, size=(RUNS, LOOKS)).cumsum(axis=1)
    n = USERS_PER_LOOK * np.arange(1, LOOKS + 1)
    pairs = [
        (
            stats.ArmStats("control", int(n[k]), float(control[r, k]), float(control[r, k])),
            stats.ArmStats("treatment", int(n[k]), float(treatment[r, k]), float(treatment[r, k])),
        )
        for r in range(RUNS)
        for k in range(LOOKS)
    ]
    comparisons = stats.compare_many(pairs, "proportion", ALPHA)
    alarmed = np.zeros(RUNS, dtype=bool)
    at = datetime(2026, 6, 12, tzinfo=UTC)
    for index, (pair, c) in enumerate(zip(pairs, comparisons, strict=False)):
        x = ExperimentNumbers(
            "aa",
            {"control": pair[0].n, "treatment": pair[1].n},
            stats.srm_check(list(pair), [0.5, 0.5]),
            (stats.non_inferiority(c, MARGIN, True, "conversion_rate"),),
            {"treatment": c},
            "conversion_rate",
            True,
        )
        numbers = Numbers(at, {ALPHA: {"aa": x}})
        if any(f.firing for rule in (guardrail, harmful) for f in evaluate(rule, numbers)):
            alarmed[index // LOOKS] = True
    share = alarmed.mean()
    print(f"A/A runs with any guardrail or harmful-arm alert over {LOOKS} looks: {share:.1%} (alpha {ALPHA:.0%})")
    assert share <= ALPHA
