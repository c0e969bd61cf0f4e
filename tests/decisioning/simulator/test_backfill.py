"""The backfilled lake, read back from the warehouse alone, matches the scenario.

Rates are checked with exact binomial / chi-square / Poisson tests at a fixed seed (p > 0.001),
so a wrong rate fails and sampling noise does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake
from scipy import stats

from decisioning.features import FEATURE_NAMES
from decisioning.flow import CONTEXT_VERSION
from decisioning.policies import RulesPolicy
from decisioning.simulator import backfill as bf
from decisioning.simulator import behaviour as bh
from momento.lake.schema import TABLES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import table_path
from momento.scenario import Scenario
from momento.settings import PROJECT_ROOT, Settings

P_MIN = 0.001


@pytest.fixture(scope="module")
def warehouse(small_lake: Path) -> Warehouse:
    w = Warehouse(small_lake)
    yield w
    w.close()


def _count(w: Warehouse, sql: str, **params: Any) -> int:
    return int(w.scalar(sql, params or None))


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_the_holdout_share_is_the_scenarios(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    units = warehouse.query("SELECT user_id, bool_or(arm = 'holdout') AS holdout FROM decisions GROUP BY user_id")
    held = int(units.get_column("holdout").sum())
    assert stats.binomtest(held, units.height, bundled_scenario.population.holdout_share).pvalue > P_MIN
    assert units.height > 1_500
    mixed = warehouse.scalar(
        "SELECT count(*) FROM (SELECT user_id FROM decisions GROUP BY user_id "
        "HAVING bool_or(arm = 'holdout') AND bool_or(arm <> 'holdout'))"
    )
    assert mixed == 0  # sticky: a holdout user is in the holdout for every placement


def test_each_experiments_allocation_matches_its_arm_shares(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    for experiment in bundled_scenario.experiments:
        arms = warehouse.query(
            "SELECT arm, count(DISTINCT user_id) AS users FROM decisions "
            "WHERE experiment_id = $x AND arm <> 'holdout' GROUP BY arm",
            {"x": experiment.id},
        )
        users = dict(zip(arms.get_column("arm"), arms.get_column("users")))
        assert set(users) == {arm.name for arm in experiment.arms}
        observed = [users[arm.name] for arm in experiment.arms]
        expected = [arm.share * sum(observed) for arm in experiment.arms]
        assert stats.chisquare(observed, expected).pvalue > P_MIN, (experiment.id, observed)


def test_the_consent_rate_is_the_scenarios(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    """Each user's consent at their first decision (withdrawals come later, and rarely)."""
    first = warehouse.query("SELECT arg_min(consent, ts) AS consent FROM decisions GROUP BY user_id")
    consenting = int(first.get_column("consent").sum())
    assert stats.binomtest(consenting, first.height, bundled_scenario.population.consent_rate).pvalue > P_MIN
    personalised_without_consent = warehouse.scalar(
        "SELECT count(*) FROM decisions WHERE NOT consent AND policy NOT IN ('default')"
    )
    assert personalised_without_consent == 0


def test_the_event_mix_matches_the_behaviour_rates(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    b = bundled_scenario.behaviour
    sessions = _count(warehouse, "SELECT count(DISTINCT session_id) FROM events WHERE event_type = 'page_view'")
    pages = _count(warehouse, "SELECT count(*) FROM events WHERE event_type = 'page_view'")
    extra = pages - sessions  # pages beyond the first are Poisson(mean - 1) per session
    assert (
        2
        * min(
            stats.poisson.cdf(extra, (b.pages_per_session_mean - 1) * sessions),
            stats.poisson.sf(extra - 1, (b.pages_per_session_mean - 1) * sessions),
        )
        > P_MIN
    )
    carts = _count(warehouse, "SELECT count(*) FROM events WHERE event_type = 'add_to_cart'")
    assert stats.binomtest(carts, sessions, b.add_to_cart_rate).pvalue > P_MIN
    nps = _count(warehouse, "SELECT count(*) FROM events WHERE event_type = 'nps_response'")
    assert stats.binomtest(nps, sessions, b.nps_response_rate).pvalue > P_MIN


def test_orders_before_the_campaign_convert_at_the_base_rate(
    warehouse: Warehouse, bundled_scenario: Scenario, small_truth: dict
) -> None:
    """No experiment runs before the campaign: sessions convert at the base rate, averaged over
    the population's segments and price sensitivities (independent attributes)."""
    b, pop = bundled_scenario.behaviour, bundled_scenario.population
    returning = 1 + pop.returning_share * (b.returning_conversion_multiplier - 1)
    sensitivity = sum(share * b.price_sensitivity_conversion.get(p, 1.0) for p, share in pop.price_sensitivity.items())
    start = _ts(small_truth["campaign_start"])
    row = warehouse.query(  # sessions that began (and so ended) well before the campaign
        "SELECT count(*) AS sessions, sum(orders) AS orders FROM (SELECT session_id, min(ts) AS began, "
        "count(*) FILTER (WHERE event_type = 'purchase') AS orders FROM events GROUP BY session_id) "
        "WHERE began < $start - INTERVAL 1 HOUR",
        {"start": start},
    ).row(0, named=True)
    assert row["sessions"] > 3_000
    assert (
        stats.binomtest(int(row["orders"]), row["sessions"], b.conversion_rate * returning * sensitivity).pvalue > P_MIN
    )
    assert warehouse.scalar("SELECT count(*) FROM decisions WHERE ts < $start", {"start": start}) == 0


def test_default_variants_are_clicked_at_the_base_click_rate(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    row = warehouse.query(
        "SELECT count(*) AS exposures, count(c.decision_id) AS clicks FROM exposures x "
        "JOIN decisions d USING (decision_id) LEFT JOIN (SELECT DISTINCT decision_id FROM events "
        "WHERE event_type = 'click') c USING (decision_id) "
        "WHERE d.placement IN ('homepage_showcase', 'product_cta', 'cart_cross_sell') "
        "AND d.variant IN ('editorial', 'buy_now', 'bestsellers')"
    ).row(0, named=True)
    assert stats.binomtest(row["clicks"], row["exposures"], bundled_scenario.behaviour.click_rate).pvalue > P_MIN


def test_returns_and_recovery_opens_happen_at_their_rates(
    warehouse: Warehouse, bundled_scenario: Scenario, small_truth: dict
) -> None:
    b = bundled_scenario.behaviour
    end = _ts(small_truth["end"])
    settled = warehouse.query(  # orders old enough that any return would be in the lake
        "SELECT count(*) AS orders, count(r.event_id) AS returns FROM events p LEFT JOIN events r "
        "ON r.event_type = 'return' AND r.session_id = p.session_id AND r.item_id = p.item_id "
        "WHERE p.event_type = 'purchase' AND p.ts < $cutoff",
        {"cutoff": end - timedelta(days=bh.RETURN_DELAY_DAYS[1] + 1)},
    ).row(0, named=True)
    assert settled["orders"] > 100
    assert stats.binomtest(settled["returns"], settled["orders"], b.return_rate).pvalue > P_MIN
    for channel, rate in (("email", b.email_open_rate), ("push", b.push_open_rate)):
        row = warehouse.query(
            "SELECT count(*) AS sent, count(x.decision_id) AS opened FROM decisions d LEFT JOIN exposures x "
            "USING (decision_id) WHERE d.placement = 'cart_recovery_offer' AND d.channel = $c AND d.ts < $cutoff",
            {"c": channel, "cutoff": end - timedelta(hours=6)},
        ).row(0, named=True)
        assert row["sent"] > 20
        assert stats.binomtest(row["opened"], row["sent"], rate).pvalue > P_MIN, channel


def test_every_row_links_up_like_live_data(warehouse: Warehouse, small_truth: dict) -> None:
    orphans = warehouse.query(
        "SELECT (SELECT count(*) FROM events e WHERE e.decision_id IS NOT NULL "
        "        AND e.decision_id NOT IN (SELECT decision_id FROM decisions)) AS events, "
        "       (SELECT count(*) FROM exposures x ANTI JOIN decisions d USING (decision_id)) AS exposures, "
        "       (SELECT count(*) FROM exposures x JOIN decisions d USING (decision_id) "
        "        WHERE x.arm <> d.arm OR x.variant <> d.variant OR x.user_id <> d.user_id OR x.ts < d.ts) AS mismatched"
    ).row(0, named=True)
    assert orphans == {"events": 0, "exposures": 0, "mismatched": 0}
    unique = warehouse.query(
        "SELECT (SELECT count(*) = count(DISTINCT event_id) FROM events) AS events, "
        "(SELECT count(*) = count(DISTINCT decision_id) FROM decisions) AS decisions"
    ).row(0, named=True)
    assert unique == {"events": True, "decisions": True}
    end = _ts(small_truth["end"])
    late = warehouse.scalar("SELECT count(*) FROM events WHERE ts > $end OR received_at < ts", {"end": end})
    assert late == 0
    stitched = warehouse.scalar(
        "SELECT count(*) FROM identities i JOIN events e USING (anonymous_id) WHERE e.user_id = i.user_id"
    )
    assert stitched > 0


def test_decisions_follow_the_engines_conventions(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    defaults = {e.id: e.default_variant for e in bundled_scenario.experiences}
    rows = warehouse.query(
        "SELECT experience_id, variant, policy, reasons, fallback, model_version, propensity, arm, status "
        "FROM decisions"
    )
    for row in rows.filter(rows.get_column("arm") == "holdout").iter_rows(named=True):
        assert row["variant"] == defaults[row["experience_id"]]
        assert row["reasons"] == (["holdout"] if row["status"] == "ok" else ["internal_error"])  # errors come first
    policy = rows.filter(rows.get_column("policy").is_in(["rules", "thompson", "propensity"]))
    assert policy.height > 0
    assert policy.get_column("model_version").null_count() == 0
    assert ((policy.get_column("propensity") > 0) & (policy.get_column("propensity") <= 1)).all()
    fallbacks = rows.filter(rows.get_column("fallback"))
    assert (fallbacks.get_column("policy") == "default").all()
    assert rows.filter(rows.get_column("policy") == "default").get_column("propensity").eq(1.0).all()


def test_logged_propensities_are_the_probabilities_the_choices_were_made_with(warehouse: Warehouse) -> None:
    """For a policy that gives every one of k variants a probability > 0, E[1 / propensity of
    the chosen variant] = k: biased or made-up propensities break it."""
    frame = warehouse.query("SELECT experience_id, 1 / propensity AS w FROM decisions WHERE policy = 'propensity'")
    for experience in ("cart_cross_sell", "adaptive_cta"):
        w = frame.filter(frame.get_column("experience_id") == experience).get_column("w").to_numpy()
        assert w.size > 100
        assert stats.ttest_1samp(w, 3.0).pvalue > P_MIN, experience


def test_every_decision_logs_its_action_distribution_and_a_policys_its_context(
    warehouse: Warehouse, bundled_scenario: Scenario
) -> None:
    """As the service logs them: the distribution over the experience's variants, in their order,
    summing to 1, with the logged propensity as the served variant's probability (a point mass
    when no policy chose); a policy's decisions alone carry the context, in the named feature set."""
    checks = warehouse.query(
        """
        SELECT experience_id, count(*) AS decisions,
               count(*) FILTER (WHERE abs(list_sum([a.p FOR a IN action_probabilities]) - 1) > 1e-9) AS not_one,
               count(*) FILTER (WHERE propensity <> [a.p FOR a IN action_probabilities IF a.variant = variant][1])
                   AS propensity_differs,
               count(*) FILTER (WHERE policy IN ('default', 'fixed') AND propensity <> 1) AS not_a_point_mass,
               count(*) FILTER (WHERE (context IS NOT NULL) <> (policy IN ('rules', 'thompson', 'propensity'))
                                OR (context IS NOT NULL) <> (context_version IS NOT NULL)) AS context_not_of_a_policy,
               count(*) FILTER (WHERE len(context) <> $features OR context_version <> $version) AS other_features,
               list_distinct(flatten(list([a.variant FOR a IN action_probabilities]))) AS variants
        FROM decisions GROUP BY ALL""",
        {"features": len(FEATURE_NAMES), "version": CONTEXT_VERSION},
    )
    assert checks.height == len(bundled_scenario.experiences)
    for row in checks.iter_rows(named=True):
        assert sorted(row.pop("variants")) == sorted(bundled_scenario.experience_by_id[row["experience_id"]].variants)
        assert {k: v for k, v in row.items() if k not in ("experience_id", "decisions")} == dict.fromkeys(
            ("not_one", "propensity_differs", "not_a_point_mass", "context_not_of_a_policy", "other_features"), 0
        ), row
    order = warehouse.query(
        "SELECT DISTINCT experience_id, [a.variant FOR a IN action_probabilities] AS variants FROM decisions"
    )
    assert order.height == len(bundled_scenario.experiences)  # one order per experience: the experience's own
    for experience_id, variants in order.iter_rows():
        assert variants == bundled_scenario.experience_by_id[experience_id].variants


def test_the_logged_context_is_what_the_policy_chose_from(warehouse: Warehouse, bundled_scenario: Scenario) -> None:
    """The business rules are a fixed function of the features: fed each rules decision's logged
    context, they give back its logged distribution (so each row carries its own features)."""
    logged = warehouse.query(
        "SELECT experience_id, context, [a.p FOR a IN action_probabilities] AS p FROM decisions WHERE policy = 'rules'"
    )
    assert logged.height > 50
    for (experience_id,), rows in logged.group_by("experience_id"):
        rules = RulesPolicy(bundled_scenario.experience_by_id[experience_id])
        X = np.array(rows.get_column("context").to_list())
        recomputed = rules.probabilities(X, np.ones((len(X), len(rules.variants)), dtype=bool))
        assert np.array_equal(recomputed, np.array(rows.get_column("p").to_list()))
        assert len(np.unique(recomputed.argmax(axis=1))) > 1  # the rules chose more than one variant


def test_a_backfill_into_a_lake_from_before_the_evaluation_columns_adds_to_it(
    tmp_path: Path, bundled_scenario: Scenario
) -> None:
    lake = tmp_path / "lake"
    bf.backfill(lake, bundled_scenario, days=2, users=200, seed=3, progress=False)
    old_columns = [
        name for name in TABLES["decisions"].names if name not in ("action_probabilities", "context", "context_version")
    ]
    path = str(table_path(lake, "decisions"))
    old = DeltaTable(path).to_pyarrow_table(columns=old_columns)
    shutil.rmtree(path)
    write_deltalake(path, old)  # as a backfill from before the columns wrote it
    added = bf.backfill(lake, bundled_scenario, days=2, users=200, seed=4, progress=False).rows["decisions"]
    w = Warehouse(lake)
    row = w.query("SELECT count(*) AS n, count(action_probabilities) AS logged FROM decisions").row(0)
    w.close()
    assert row == (old.num_rows + added, added)


def test_the_scheduled_incidents_leave_their_marks(warehouse: Warehouse, small_truth: dict) -> None:
    windows = {w["name"]: (_ts(w["start"]), _ts(w["end"])) for w in small_truth["incidents"]}
    start, end = windows["latency_spike"]
    reasons = warehouse.query(
        "SELECT reasons[1] AS reason, count(*) AS n FROM decisions WHERE ts >= $s AND ts < $e "
        "AND arm IN ('treatment', 'adaptive') GROUP BY 1",
        {"s": start, "e": end},
    )
    found = dict(zip(reasons.get_column("reason"), reasons.get_column("n")))
    assert found.get("budget_exceeded", 0) > 0 and not any(r.startswith("policy_") for r in found)
    start, end = windows["model_outage"]
    outage = warehouse.query(
        "SELECT reasons[1] AS reason FROM decisions WHERE ts >= $s AND ts < $e "
        "AND experience_id IN ('adaptive_cta', 'cart_cross_sell') AND arm IN ('treatment', 'adaptive') "
        "AND consent",
        {"s": start, "e": end},
    ).get_column("reason")
    assert outage.len() > 0 and "policy_propensity" not in outage.to_list()
    start, end = windows["error_burst"]
    burst = warehouse.query(
        "SELECT count(*) FILTER (WHERE status = 'error') AS errors, count(*) AS n FROM decisions "
        "WHERE ts >= $s AND ts < $e",
        {"s": start, "e": end},
    ).row(0, named=True)
    assert stats.binomtest(burst["errors"], burst["n"], 0.3).pvalue > P_MIN
    assert (
        warehouse.scalar(
            "SELECT count(*) FROM decisions WHERE status = 'error' AND (ts < $s OR ts >= $e)", {"s": start, "e": end}
        )
        == 0
    )
    start, end = windows["ingestion_stall"]
    lag = warehouse.query(
        "SELECT min(received_at) AS first FROM events WHERE ts >= $s AND ts < $e", {"s": start, "e": end}
    ).item()
    assert lag >= end  # nothing that happened during the stall arrived before it ended


def test_the_same_seed_gives_the_same_history(tmp_path: Path, bundled_scenario: Scenario) -> None:
    end = datetime(2026, 6, 12, 12, tzinfo=UTC)
    tables = []
    for name in ("a", "b"):
        result = bf.backfill(tmp_path / name, bundled_scenario, days=4, users=300, seed=5, progress=False, end=end)
        assert result.rows["events"] > 0 and result.end == end
        w = Warehouse(tmp_path / name)
        tables.append(w.query("SELECT ts, user_id, event_type, revenue FROM events ORDER BY ts, user_id, event_type"))
        w.close()
    assert tables[0].equals(tables[1])


def test_a_streamed_backfills_first_shard_is_the_one_shot_backfill_of_its_customers(
    tmp_path: Path, bundled_scenario: Scenario
) -> None:
    end = datetime(2026, 6, 12, 12, tzinfo=UTC)
    one_shot = bf.backfill(tmp_path / "one", bundled_scenario, days=4, users=150, seed=5, progress=False, end=end)
    streamed = bf.backfill(
        tmp_path / "streamed", bundled_scenario, days=4, users=300, seed=5, progress=False, end=end, shard_users=150
    )
    assert (one_shot.shards, streamed.shards, streamed.users) == (1, 2, 300)
    history = "SELECT ts, user_id, anonymous_id, event_type, revenue FROM events ORDER BY ALL"
    first, both = Warehouse(tmp_path / "one"), Warehouse(tmp_path / "streamed")
    try:
        alone, everything = first.query(history), both.query(history)
    finally:
        first.close()
        both.close()
    # the same customers and anonymous visitors, the same history; the second shard's are others
    shard = everything.filter(pl.col("user_id").is_in(alone.get_column("user_id").unique().implode()))
    assert shard.equals(alone)
    assert everything.height > alone.height
    assert streamed.rows["events"] == everything.height


def test_a_streamed_backfill_leaves_every_tables_log_checkpointed_at_its_newest_version(
    tmp_path: Path, bundled_scenario: Scenario
) -> None:
    end = datetime(2026, 6, 12, 12, tzinfo=UTC)
    bf.backfill(tmp_path, bundled_scenario, days=2, users=200, seed=5, progress=False, end=end, shard_users=100)
    for name in TABLES:
        log = tmp_path / name / "_delta_log"
        version = DeltaTable(str(tmp_path / name)).version()
        assert version >= 2, name  # created, then a commit per shard
        assert (log / f"{version:020d}.checkpoint.parquet").is_file(), name


def test_momento_backfill_fills_the_lake(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")}
    environment["MOMENTO_LAKE"] = str(tmp_path / "lake")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "backfill", "--days", "2", "--users", "300"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "events" in done.stdout and "ground truth" in done.stdout
    w = Warehouse(tmp_path / "lake")
    assert w.scalar("SELECT count(*) FROM events") > 0 and w.scalar("SELECT count(*) FROM decisions") > 0
    w.close()


def test_bad_input_gets_a_message_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(lake=tmp_path / "lake")
    assert bf.run_backfill(settings, days=0, users=10, seed=1) == 2
    assert "days" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[business]\nname = 'x'\n")
    assert bf.run_backfill(Settings(lake=tmp_path / "lake", scenario=broken), days=2, users=10, seed=1) == 2
    assert "broken.toml" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # nothing written
