"""pages/governance.py in Streamlit's AppTest: the numbers it shows are the ones metrics/
computes, the audit search finds what the engine logged, and damaged or empty lakes render a
message, never a traceback."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from metrics import compliance
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from pages import cache
from tests.support.cockpit import pending, settled

PAGE = "pages/governance.py"


@pytest.fixture(scope="module")
def warehouse(small_lake: Path):
    wh = Warehouse(small_lake)
    yield wh
    wh.close()


def _table(at, column: str):
    """The first table on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_key_numbers_equal_metrics(run_page, small_lake, warehouse, metric_values, texts, pt_br):
    at = run_page(PAGE, small_lake)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    shown = metric_values(at)
    c = compliance.consent(warehouse, Filters())
    assert c.decisions > 0
    assert shown["Consent rate"] == pt_br(f"{c.consent_rate * 100:.1f}%")
    assert shown["Consent withdrawals"] == pt_br(f"{c.withdrawal_rate * 100:.2f}%")
    assert shown["Users reached by messages"] == pt_br(f"{c.messaged_users:,}")
    parity = _table(at, "personalised_rate")
    want = compliance.parity(warehouse, Filters(), "segment", ("discount_10", "discount_15"), ("cart_recovery_offer",))
    assert parity.sort_values("grp")["decisions"].tolist() == want.groups.sort("grp")["decisions"].to_list()
    assert want.personalisation.verdict in texts(at)
    saturation = _table(at, "over_cap")
    assert saturation["user_days"].sum() == compliance.saturation(warehouse, Filters())["user_days"].sum()
    assert len(at.get("vega_lite_chart")) >= 4  # consent rate, withdrawals, saturation, parity x2
    audit = _table(at, "explanation")
    assert len(audit) == min(200, c.decisions)
    assert "No erasure has been requested." in texts(at)


def test_a_panel_computed_for_the_first_time_says_so_and_fills_in_on_a_later_redraw(
    run_page, small_lake, warehouse, metric_values, monkeypatch
):
    """The page's first render does not wait for its scans: each slow panel says it is being
    computed, the rest of the page is drawn, and the numbers come on the next redraws."""
    monkeypatch.setattr(cache, "FIRST_WAIT_SECONDS", 0.0)
    at = run_page(PAGE, small_lake, settle=False)
    assert not at.exception, [e.value for e in at.exception]
    waiting = {text.split(":")[0] for text in pending(at)}
    assert {"Consent", "Frequency saturation", "Parity", "Propensity integrity"} <= waiting
    assert "Consent rate" not in metric_values(at)
    assert "Audit trail" in [h.value for h in at.subheader]  # the rest of the page is drawn
    settled(at)
    c = compliance.consent(warehouse, Filters())
    assert metric_values(at)["Users reached by messages"] == f"{c.messaged_users:,}".replace(",", ".")


def test_parity_across_another_dimension(run_page, small_lake, warehouse, texts):
    at = run_page(PAGE, small_lake)
    settled(at.get("button_group")[0].set_value("region").run())
    assert not at.exception
    want = compliance.parity(warehouse, Filters(), "region", ("discount_10", "discount_15"), ("cart_recovery_offer",))
    shown = _table(at, "personalised_rate")
    assert sorted(shown["grp"]) == sorted(want.groups["grp"].to_list())
    assert want.offers.verdict in texts(at)


def test_audit_search_by_user_and_reason(run_page, small_lake, warehouse):
    user = warehouse.scalar("SELECT user_id FROM decisions WHERE fallback ORDER BY decision_id LIMIT 1")
    at = run_page(PAGE, small_lake)
    at.text_input(key="audit_user").input(user)
    at.selectbox(key="audit_reason").select("no_consent")
    at.button[0].click().run()
    assert not at.exception
    found = _table(at, "explanation")
    want = compliance.audit(warehouse, Filters(), compliance.AuditQuery(user_id=user, reason="no_consent"))
    assert found["decision_id"].tolist() == want["decision_id"].to_list()
    assert set(found["user_id"]) <= {user}


def test_hostile_search_text_is_just_text(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake)
    at.text_input(key="audit_decision").input("x' OR '1'='1'; DROP TABLE decisions; --")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "No decision matches this search" in texts(at)


def test_erasure_log_shows_hashes_only(run_page, small_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(small_lake, lake)
    wh = Warehouse(lake)
    user = wh.scalar("SELECT min(user_id) FROM decisions")
    wh.close()
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        writer.erase_user(user, requested_by="dpo@example.com")
    at = run_page(PAGE, lake)
    assert not at.exception
    log = _table(at, "subject_hash")
    assert log["subject_hash"].tolist() == [hashlib.sha256(user.encode()).hexdigest()]
    assert user not in log.to_string()


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-31"]})
    assert not at.exception and not at.error
    shown = texts(at)
    assert "No decisions or events for 01/01/2001 – 31/01/2001" in shown
    assert "No exposures for" in shown and "No decision matches this search" in shown


@pytest.mark.parametrize("which", ["empty", "missing"])
def test_empty_or_missing_lake(run_page, empty_lake, tmp_path, which, texts):
    at = run_page(PAGE, empty_lake if which == "empty" else tmp_path / "no-such-lake")
    assert not at.exception and not at.error
    assert "No decisions or events" in texts(at) and "No erasure has been requested." in texts(at)


def test_propensity_integrity_per_experience(run_page, small_lake, warehouse, bundled_scenario):
    from metrics.ope_lake import integrity_by_experience

    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error
    experiences = tuple((e.id, tuple(e.variants)) for e in bundled_scenario.experiences)
    expected = integrity_by_experience(warehouse, Filters(), experiences)
    shown = _table(at, "not_summing_to_one")
    assert shown["experience_id"].tolist() == expected["experience_id"].to_list()
    assert shown["rows"].tolist() == expected["rows"].to_list()
    assert shown["problems"].tolist() == [0] * expected.height
