"""The KPI catalogue: every required metric with its type and direction, the operational ones
pointing at their modules, and inconsistent definitions refused."""

from __future__ import annotations

import pytest

from momento import kpis


def test_catalogue_covers_the_business_metrics_with_their_types_and_directions():
    m = kpis.METRICS
    expected = {
        "conversion_rate": "proportion",
        "revenue_per_user": "mean",
        "arpu": "mean",
        "aov": "ratio",
        "ctr": "ratio",
        "margin_per_user": "mean",
        "return_rate": "ratio",
        "retention_7d": "proportion",
        "opt_out_rate": "proportion",
        "nps": "ratio",
        "coverage": "proportion",
        "eligible_share": "ratio",
    }
    assert {name: m[name].type for name in expected} == expected
    assert [name for name, metric in m.items() if not metric.higher_is_better] == ["return_rate", "opt_out_rate"]
    assert m["conversion_rate"].cuped and m["revenue_per_user"].cuped and not m["retention_7d"].cuped
    assert m["retention_7d"].window == kpis.Window(1, 8)  # the 7 calendar days after the first
    assert {o.implemented_in for o in kpis.OPERATIONAL.values()} == {"metrics.health", "metrics.model_quality"}
    table = kpis.catalogue()
    assert table["name"].to_list() == [*m, *kpis.OPERATIONAL]
    assert table.filter(table["name"] == "aov")["definition"].item() == "revenue (BRL) / orders"
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        kpis.metric("nope")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(type="ratio"), "only they, have a denominator"),
        (dict(type="mean", denominator="orders"), "only they, have a denominator"),
        (dict(type="ratio", denominator="orders", cuped=True), "CUPED"),
        (dict(type="mean", numerator="decisions", window=kpis.Window(0, 24)), "window end"),
        (dict(type="mean", numerator="nothing"), "unknown measure"),
    ],
)
def test_inconsistent_metric_definitions_are_refused(fields, message):
    base = dict(name="x", label="X", unit="share", type="mean", numerator="orders")
    with pytest.raises(ValueError, match=message):
        kpis.Metric(**(base | fields))
