"""The monitors file: the bundled one loads, every kind validates its fields, and a bad field is
refused with its path."""

from __future__ import annotations

import pytest

from metrics.monitors.rules import MonitorsError, load_monitors, parse_monitors
from momento.settings import PROJECT_ROOT


def test_the_bundled_monitors_file_loads_every_kind():
    monitors = load_monitors(PROJECT_ROOT / "data" / "monitors.toml")
    assert {rule.kind for rule in monitors.rules} == {
        "srm",
        "guardrail",
        "harmful_arm",
        "latency_burn",
        "error_rate",
        "fallback_rate",
        "freshness",
        "consent_violation",
        "model_health",
    }
    assert next(rule for rule in monitors.rules if rule.kind == "guardrail").action == "pause"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rules": [{"name": "a", "kind": "srm", "threshold": 2}]}, "rules.0.threshold: "),
        ({"rules": [{"name": "a", "kind": "nope"}]}, "rules.0.kind: "),
        ({"rules": [{"name": "a", "kind": "error_rate"}]}, "rules.0.threshold: "),
        ({"rules": [{"name": "a", "kind": "srm", "bogus": 1}]}, "rules.0.bogus: "),
        (
            {"rules": [{"name": "a", "kind": "latency_burn", "windows": [{"long_s": 10, "short_s": 20, "burn": 1}]}]},
            "rules.0.windows.0.short_s: must be shorter than long_s",
        ),
        (
            {
                "rules": [
                    {"name": "x", "kind": "srm"},
                    {"name": "a", "kind": "error_rate", "threshold": 0.1, "action": "pause"},
                ]
            },
            "rules.1.action: only guardrail and harmful_arm rules may pause an arm",
        ),
        (
            {"rules": [{"name": "a", "kind": "srm"}, {"name": "a", "kind": "freshness"}]},
            "rules: two rules are called 'a'",
        ),
        (
            {"rules": [{"name": "m", "kind": "model_health", "recent_s": 3600, "reference_s": 600}]},
            "rules.0.reference_s: must be longer than recent_s",
        ),
        ({"rules": [{"name": "m", "kind": "model_health", "outcome": "revenue"}]}, "rules.0.outcome: "),
        ({"webhook": {"url": "ftp://example"}}, "webhook.url: "),
        ({"interval_s": 0}, "interval_s: "),
    ],
)
def test_a_bad_field_is_refused_with_its_path(raw, message):
    with pytest.raises(MonitorsError) as refused:
        parse_monitors(raw)
    assert str(refused.value).startswith(message), str(refused.value)


def test_a_file_error_names_the_file(tmp_path):
    path = tmp_path / "monitors.toml"
    path.write_text('[[rules]]\nname = "a"\nkind = "srm"\nthreshold = -1\n')
    with pytest.raises(MonitorsError, match=r"monitors.toml: rules.0.threshold"):
        load_monitors(path)
    path.write_text("not toml [")
    with pytest.raises(MonitorsError, match="not valid TOML"):
        load_monitors(path)
    with pytest.raises(MonitorsError, match="no such monitors file"):
        load_monitors(tmp_path / "missing.toml")


def test_the_webhook_key_file_is_read_next_to_the_monitors_file(tmp_path):
    path = tmp_path / "monitors.toml"
    path.write_text('[webhook]\nurl = "http://127.0.0.1:9/hook"\nsecret_file = "hook.key"\n')
    assert load_monitors(path).webhook.secret_file == tmp_path / "hook.key"
