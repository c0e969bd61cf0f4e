"""pages/alerts.py and the Experiments page's pause control (pages/pauses.py) in Streamlit's
AppTest: open and resolved alerts, paused arms with their audit, an empty lake; and a pause asked
from the cockpit of the REAL service (a subprocess) on the lake the page reads."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from momento.lake.writer import LakeWriter
from tests.decisioning.conftest import launch  # noqa: F401 - the fixture, reused

PAGE = "pages/alerts.py"
AT = datetime.now(UTC) - timedelta(minutes=3)


def _alert(alert_id: str, rule: str, subject: str, state: str, said: tuple[str, int]) -> dict:
    """An alert change: `said` is its summary and when, in seconds after AT."""
    summary, seconds = said
    return {
        "alert_id": alert_id,
        "ts": AT + timedelta(seconds=seconds),
        "rule": rule,
        "kind": rule,
        "subject": subject,
        "state": state,
        "summary": summary,
        "evidence": "{}",
        "action": "pause" if rule == "guardrail" else None,
    }


@pytest.fixture
def alerting_lake(tmp_path):
    lake = tmp_path / "lake"
    with LakeWriter(lake, compact_every_seconds=None, background=False) as writer:
        writer.append(
            "alerts",
            [
                _alert("a1", "error_rate", "service", "firing", ("errors at 31.0% of 60 decisions", 0)),
                _alert("a2", "error_rate", "service", "resolved", ("errors below 10.0%", 30)),
                _alert(
                    "a3",
                    "guardrail",
                    "exp_cart_cross_sell/treatment",
                    "firing",
                    ("exp_cart_cross_sell/treatment: guardrail conversion_rate breached", 40),
                ),
            ],
        )
        writer.append(
            "arm_pauses",
            [
                {
                    "change_id": "p1",
                    "ts": AT + timedelta(seconds=41),
                    "experiment_id": "exp_cart_cross_sell",
                    "arm": "treatment",
                    "action": "pause",
                    "actor": "rule:guardrail",
                    "rule": "guardrail",
                    "reason": "guardrail breached",
                    "evidence": "{}",
                }
            ],
        )
    return lake


def test_open_and_resolved_alerts_and_paused_arms(run_page, alerting_lake, texts):
    at = run_page(PAGE, alerting_lake)
    assert not at.exception
    shown = texts(at)
    assert "guardrail conversion_rate breached" in shown  # open
    assert "errors at 31.0%" not in " ".join(e.value for e in at.error)  # resolved: not open any more
    history = next(d.value for d in at.dataframe if "summary" in d.value.columns)
    assert history["state"].tolist() == ["firing", "resolved", "firing"]
    paused = next(d.value for d in at.dataframe if "actor" in d.value.columns and "evidence" not in d.value.columns)
    assert paused[["experiment_id", "arm", "actor"]].values.tolist() == [
        ["exp_cart_cross_sell", "treatment", "rule:guardrail"]
    ]
    assert "model_health** — Not judged yet" in shown  # no model decision in this lake
    assert {"AUC, recent", "AUC, reference"} <= {m.label for m in at.metric}


def test_an_empty_or_missing_lake(run_page, empty_lake, tmp_path, texts):
    for lake in (empty_lake, tmp_path / "nowhere"):
        at = run_page(PAGE, lake)
        assert not at.exception
        assert "No alert is open." in texts(at)


def test_the_experiments_page_pauses_and_resumes_an_arm_through_the_service(
    run_page,
    small_lake,
    tmp_path,
    launch,  # noqa: F811 - the fixture imported above
    texts,
):
    workdir = tmp_path / "svc"
    workdir.mkdir()
    shutil.copytree(small_lake, workdir / "lake")
    service = launch(workdir)
    at = run_page("pages/experiments.py", service.lake, service_url=service.url)
    at.selectbox(key="experiment_view").select("exp_cart_cross_sell").run()
    assert not at.exception
    at.text_input(key="pause_reason_exp_cart_cross_sell").input("returns look high").run()
    at.button(key="pause_exp_cart_cross_sell_treatment").click().run()
    assert not at.exception
    assert "exp_cart_cross_sell · treatment paused" in texts(at)
    assert at.button(key="pause_exp_cart_cross_sell_treatment").label == "Resume treatment"
    audit = next(d.value for d in at.dataframe if "actor" in d.value.columns)
    assert audit[["arm", "action", "actor", "reason"]].values.tolist() == [
        ["treatment", "pause", "cockpit", "returns look high"]
    ]
    decision = httpx.post(
        f"{service.url}/v1/decide",
        json={"user_id": "someone", "placement": "cart_cross_sell", "channel": "web", "consent": True},
    ).json()
    assert decision["decisions"][0]["arm"] in ("control", "holdout")
    at.button(key="pause_exp_cart_cross_sell_treatment").click().run()
    assert at.button(key="pause_exp_cart_cross_sell_treatment").label == "Pause treatment"


def test_the_pause_control_with_the_service_down(run_page, small_lake, texts):
    at = run_page("pages/experiments.py", small_lake)
    at.selectbox(key="experiment_view").select("exp_cart_cross_sell").run()
    at.button(key="pause_exp_cart_cross_sell_treatment").click().run()
    assert not at.exception
    assert "The service could not be reached" in texts(at)
