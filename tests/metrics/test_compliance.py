"""metrics/compliance.py against polars/scipy over hand-made rows with a planted disparity."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from metrics import compliance as gov
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.codes import POLICY_NAMES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

T0 = datetime(2026, 6, 10, 0, 0, tzinfo=UTC)
N = 4_000
OFFERS = ("discount_10", "discount_15")
OFFER_PLACEMENTS = ("cart_recovery_offer",)
ERASED = f"{7:032x}"


def _rows(rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    region = rng.choice(["sudeste", "nordeste", "norte"], N)
    placement = rng.choice(["homepage_showcase", "cart_recovery_offer"], N)
    channel = np.where(
        placement == "cart_recovery_offer", rng.choice(["email", "push"], N), rng.choice(["web", "app"], N)
    )
    # planted: 'norte' gets an offer a third as often as the other regions
    offer_p = np.where(region == "norte", 0.15, 0.45)
    offered = (placement == "cart_recovery_offer") & (rng.random(N) < offer_p)
    variant = np.where(
        offered, rng.choice(OFFERS, N), np.where(placement == "cart_recovery_offer", "reminder", "editorial")
    )
    fallback = rng.random(N) < 0.1
    decisions = pl.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(N)],
            "ts": [T0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 3 * 86_400, N))],
            "user_id": [f"{u:032x}" for u in rng.integers(0, 300, N)],
            "journey": np.where(placement == "cart_recovery_offer", "recovery", "browse"),
            "placement": placement,
            "channel": channel,
            "experience_id": "x",
            "arm": rng.choice(["holdout", "control", "treatment"], N, p=[0.05, 0.45, 0.5]),
            "variant": variant,
            "policy": rng.choice(["rules", "thompson", "fixed", "default"], N),
            "propensity": 1.0,
            "reasons": [["policy_rules", "frequency_cap"] if f else ["policy_rules"] for f in fallback],
            "fallback": fallback,
            "fallback_reason": ["frequency_cap" if f else None for f in fallback],
            "consent": rng.random(N) < 0.85,
            "latency_us": 700,
            "status": "ok",
            "segment": rng.choice(["new", "returning"], N),
            "device": rng.choice(["mobile", "desktop", "tablet"], N),
            "region": region,
        }
    )
    seen = decisions.filter(pl.Series(rng.random(N) < 0.7))
    # e-mail twice for some: saturation above the cap of 1
    exposures = pl.concat([seen, seen.filter(pl.col("channel") == "email")[::3]]).select(
        (pl.lit("x") + pl.int_range(pl.len()).cast(pl.String)).alias("exposure_id"),
        "decision_id",
        "ts",
        "user_id",
        "placement",
        "variant",
        "channel",
    )
    n_events = 2_000
    e_ts = [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 3 * 86_400, n_events)]
    event_type = rng.choice(["page_view", "consent_change", "opt_out"], n_events, p=[0.9, 0.05, 0.05])
    events = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n_events)],
            "ts": e_ts,
            "received_at": e_ts,
            "user_id": [f"{u:032x}" for u in rng.integers(0, 300, n_events)],
            "channel": rng.choice(["web", "email"], n_events),
            "event_type": event_type,
            "consent": [
                bool(c) if t == "consent_change" else None for c, t in zip(rng.random(n_events) < 0.3, event_type)
            ],
            "segment": rng.choice(["new", "returning"], n_events),
        }
    )
    return decisions, exposures, events


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    decisions, exposures, events = _rows(np.random.default_rng(11))
    root = tmp_path_factory.mktemp("governance_lake")
    with LakeWriter(root, background=False, compact_every_seconds=None) as writer:
        writer.append("decisions", decisions)
        writer.append("exposures", exposures)
        writer.append("events", events)
        writer.flush()
        writer.erase_user(ERASED, requested_by="test")
    keep = pl.col("user_id") != ERASED
    wh = Warehouse(root)
    yield wh, decisions.filter(keep), exposures.filter(keep), events.filter(keep)
    wh.close()


def test_consent_and_opt_out_rates(lake):
    wh, decisions, exposures, events = lake
    for f in (Filters(), Filters(channel="email"), Filters(segment="new")):
        d = decisions.filter(pl.col("channel") == f.channel) if f.channel else decisions
        d = d.filter(pl.col("segment") == f.segment) if f.segment else d
        e = events.filter(pl.col("channel") == f.channel) if f.channel else events
        e = e.filter(pl.col("segment") == f.segment) if f.segment else e
        x = exposures.filter(pl.col("channel") == f.channel) if f.channel else exposures
        if f.segment:
            x = x.filter(pl.col("decision_id").is_in(d["decision_id"].implode()))
        got = gov.consent(wh, f)
        assert got.decisions == d.height and got.consented == d["consent"].sum()
        assert got.consent_rate == pytest.approx(d["consent"].mean())
        assert got.decided_users == d["user_id"].n_unique()
        withdrawn = e.filter((pl.col("event_type") == "consent_change") & (pl.col("consent") == False))  # noqa: E712
        assert got.withdrawn_users == withdrawn["user_id"].n_unique()
        messaged = x.filter(pl.col("channel").is_in(["email", "push"]))["user_id"].n_unique()
        assert got.messaged_users == messaged
        opted = e.filter(pl.col("event_type") == "opt_out")["user_id"].n_unique()
        assert got.opt_out_rate == pytest.approx(opted / messaged if messaged else None)


def test_consent_daily_adds_up(lake):
    wh, decisions, _, events = lake
    daily = gov.consent_daily(aggregates(wh, pre_days=14), Filters())
    assert daily["decisions"].sum() == decisions.height
    assert daily["opt_outs"].sum() == (events["event_type"] == "opt_out").sum()
    assert daily.height == 3


def test_saturation_distribution_and_caps(lake):
    wh, _, exposures, _ = lake
    dist = gov.saturation(wh, Filters())
    per = exposures.group_by("channel", "user_id", pl.col("ts").dt.date()).len()
    want = per.group_by("channel", pl.col("len").alias("exposures")).agg(pl.len().alias("user_days"))
    assert sorted(dist.iter_rows()) == sorted(want.iter_rows())
    summary = gov.saturation_summary(dist, {"email": 1, "push": 2})
    email = summary.filter(pl.col("channel") == "email").row(0, named=True)
    email_days = per.filter(pl.col("channel") == "email")
    assert email["user_days"] == email_days.height
    assert email["over_cap"] == pytest.approx((email_days["len"] > 1).mean()) and email["over_cap"] > 0
    assert email["max"] == email_days["len"].max()
    assert email["median"] == email_days["len"].sort()[int(np.ceil(0.5 * email_days.height)) - 1]
    assert summary.filter(pl.col("channel") == "web")["over_cap"][0] is None


def test_parity_finds_the_planted_offer_disparity(lake):
    wh, decisions, _, _ = lake
    seen = decisions
    region = gov.parity(wh, Filters(), "region", OFFERS, OFFER_PLACEMENTS)
    eligible = seen.filter(pl.col("placement") == "cart_recovery_offer")
    want = (
        eligible.group_by("region")
        .agg(pl.len().alias("n"), pl.col("variant").is_in(OFFERS).sum().alias("k"))
        .sort("region")
    )
    got = region.groups.sort("grp")
    assert got["offer_eligible"].to_list() == want["n"].to_list()
    assert got["offered"].to_list() == want["k"].to_list()
    table = np.column_stack([want["k"], want["n"] - want["k"]])
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    assert region.offers.chi2 == pytest.approx(chi2) and region.offers.p_value == pytest.approx(p)
    assert region.offers.dof == dof == 2
    assert region.offers.disparity is True and "disparity" in region.offers.verdict
    personalised = seen.filter((pl.col("status") == "ok") & ~pl.col("fallback") & pl.col("policy").is_in(POLICY_NAMES))
    assert got["personalised"].sum() == personalised.height
    assert got["decisions"].sum() == seen.height

    device = gov.parity(wh, Filters(), "device", OFFERS, OFFER_PLACEMENTS)
    assert device.offers.disparity is False
    assert device.personalisation.disparity is False


def test_parity_refuses_unknown_dimensions(lake):
    wh = lake[0]
    with pytest.raises(ValueError, match="dimension"):
        gov.parity(wh, Filters(), "region; DROP TABLE decisions", OFFERS, OFFER_PLACEMENTS)


def test_disparity_chi_square_by_hand_and_degenerate():
    got = gov.disparity("x", [30, 10], [100, 100])
    observed = np.array([[30, 70], [10, 90]])
    expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / observed.sum()
    assert got.chi2 == pytest.approx(((observed - expected) ** 2 / expected).sum())
    assert got.cramers_v == pytest.approx(np.sqrt(got.chi2 / 200))
    assert got.lowest_to_highest == pytest.approx(1 / 3)
    assert gov.disparity("x", [5], [10]).disparity is None  # one group
    assert gov.disparity("x", [0, 0], [10, 10]).disparity is None  # nobody offered
    assert gov.disparity("x", [3, 0], [10, 0]).disparity is None  # empty group left out


def test_audit_search_is_parameterised(lake):
    wh, decisions, _, _ = lake
    one = gov.audit(wh, Filters(), gov.AuditQuery(decision_id="d00042"))
    assert one["decision_id"].to_list() == ["d00042"]
    assert one["explanation"][0].startswith("Chosen by the experience's business rules")
    user = decisions["user_id"][0]
    by_user = gov.audit(wh, Filters(), gov.AuditQuery(user_id=user, limit=10_000))
    assert by_user.height == (decisions["user_id"] == user).sum()
    assert by_user["ts"].is_sorted(descending=True)
    capped = gov.audit(wh, Filters(), gov.AuditQuery(reason="frequency_cap", limit=10_000))
    assert capped.height == decisions["fallback"].sum()
    assert gov.audit(wh, Filters(), gov.AuditQuery(limit=5)).height == 5
    assert gov.audit(wh, Filters(), gov.AuditQuery(decision_id="  ", limit=3)).height == 3  # blank = any
    hostile = gov.audit(wh, Filters(), gov.AuditQuery(user_id="' OR 1=1 --", reason="x'); DROP TABLE decisions; --"))
    assert hostile.is_empty()
    assert gov.audit(wh, Filters(), gov.AuditQuery(limit=1)).height == 1  # table still there


def test_erasure_log_records_the_subject_as_a_hash(lake):
    wh, *_ = lake
    log = gov.erasures(wh)
    assert log.height == 1
    assert log["subject_hash"][0] == hashlib.sha256(ERASED.encode()).hexdigest()
    assert log["rows_deleted"][0] > 0 and log["requested_by"][0] == "test"
    assert gov.audit(wh, Filters(), gov.AuditQuery(user_id=ERASED)).is_empty()


def test_empty_lake_answers_empty():
    wh = Warehouse(Path("/nonexistent/momento-lake"))
    c = gov.consent(wh, Filters())
    assert c.decisions == 0 and c.consent_rate is None and c.opt_out_rate is None
    assert gov.saturation(wh, Filters()).is_empty()
    assert gov.saturation_summary(gov.saturation(wh, Filters()), {}).is_empty()
    p = gov.parity(wh, Filters(), "segment", OFFERS, OFFER_PLACEMENTS)
    assert p.groups.is_empty() and p.offers.disparity is None
    assert gov.audit(wh, Filters(), gov.AuditQuery()).is_empty()
    assert gov.erasures(wh).is_empty()
