"""`momento import bandit-log` (cli/importing.py, momento/lake/bandit_import.py) on generated files
in the Open Bandit Dataset layout: per-policy click rates in the warehouse equal the file's;
re-importing adds nothing; a bad file is refused whole with its line and column, nothing written."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from cli.main import main
from metrics.filters import Filters
from metrics.ope_lake import load_log
from momento.lake.warehouse import Warehouse
from tests.support.obd import obd_file


def run(lake: Path, *argv: str, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setenv("MOMENTO_LAKE", str(lake))
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = main(["import", "bandit-log", *argv])
    return code, out.getvalue(), err.getvalue()


def counts(lake: Path) -> dict[str, int]:
    wh = Warehouse(lake)
    try:
        return {t: wh.scalar(f"SELECT count(*) FROM {t}") for t in ("decisions", "exposures", "events")}
    finally:
        wh.close()


def test_per_policy_click_rates_in_the_warehouse_equal_the_files(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    random_log = obd_file(tmp_path / "random.csv", 3_000, 1, 0.04)
    bts_log = obd_file(tmp_path / "bts.parquet", 2_000, 2, 0.07)
    assert (
        run(lake, str(tmp_path / "random.csv"), "--campaign", "obd_all", "--policy", "random", monkeypatch=monkeypatch)[
            0
        ]
        == 0
    )
    code, out, _ = run(
        lake, str(tmp_path / "bts.parquet"), "--campaign", "obd_all", "--policy", "bts", monkeypatch=monkeypatch
    )
    assert code == 0 and "added 2,000 decisions" in out and "user_feature_0" in out
    wh = Warehouse(lake)
    rates = wh.query("""
        SELECT d.policy, count(*) AS n, count(e.event_id) AS clicks, avg(d.propensity) AS mean_p
        FROM decisions d LEFT JOIN events e ON e.decision_id = d.decision_id AND e.event_type = 'click'
        WHERE d.experience_id = 'obd_all' GROUP BY d.policy""")
    by_policy = {r["policy"]: r for r in rates.iter_rows(named=True)}
    for name, frame in (("random", random_log), ("bts", bts_log)):
        assert by_policy[name]["n"] == frame.height
        assert by_policy[name]["clicks"] / by_policy[name]["n"] == pytest.approx(frame["click"].mean())
        assert by_policy[name]["mean_p"] == pytest.approx(frame["propensity_score"].mean())
    exposures = wh.scalar("SELECT count(*) FROM exposures WHERE placement = 'obd_all'")
    assert exposures == 5_000
    variants = tuple(f"item_{i}" for i in range(5))
    window = 1.0  # hours: the Policy lab reads a click within an hour of its decision, the last hour left out
    loaded = load_log(wh, Filters(), "obd_all", variants, "click", window_hours=window)
    wh.close()
    both = pl.concat([random_log, bts_log]).with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    mature = both.filter(pl.col("timestamp") <= pl.col("timestamp").max() - pl.duration(hours=window))
    assert loaded.integrity.problems == 0 and loaded.integrity.unknown == loaded.rows == mature.height
    assert loaded.log is not None and loaded.log.context.shape[1] == 3  # position and the two affinities
    assert loaded.log.reward.sum() == mature["click"].sum()


def test_reimporting_the_same_file_adds_nothing(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    obd_file(tmp_path / "log.csv", 1_000, 3, 0.05)
    code, _, _ = run(lake, str(tmp_path / "log.csv"), "--campaign", "c", "--policy", "random", monkeypatch=monkeypatch)
    assert code == 0
    before = counts(lake)
    code, out, _ = run(
        lake, str(tmp_path / "log.csv"), "--campaign", "c", "--policy", "random", monkeypatch=monkeypatch
    )
    assert code == 0 and "added 0 decisions, 0 exposures, 0 click events (1,000 already in the lake)" in out
    assert counts(lake) == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop("propensity_score"), "line 1, column 'propensity_score': missing column 'propensity_score'"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 41)
                .then(0.0)
                .otherwise(pl.col("propensity_score"))
                .alias("propensity_score")
            ),
            "line 43, column 'propensity_score': propensity outside",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 7)
                .then(1.5)
                .otherwise(pl.col("propensity_score"))
                .alias("propensity_score")
            ),
            "line 9, column 'propensity_score': propensity outside",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 99)
                .then(pl.lit("yesterday"))
                .otherwise(pl.col("timestamp"))
                .alias("timestamp")
            ),
            "line 101, column 'timestamp': unparsable time ('yesterday')",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(2).otherwise(pl.col("click")).alias("click")
            ),
            "line 5, column 'click': click must be 0 or 1",
        ),
    ],
)
def test_a_bad_file_is_refused_whole_with_its_line(tmp_path, monkeypatch, edit, message):
    lake = tmp_path / "lake"
    good = obd_file(tmp_path / "good.csv", 200, 4, 0.05)
    assert run(lake, str(tmp_path / "good.csv"), "--campaign", "c", "--policy", "p", monkeypatch=monkeypatch)[0] == 0
    before = counts(lake)
    edit(good).write_csv(tmp_path / "bad.csv")
    code, out, err = run(lake, str(tmp_path / "bad.csv"), "--campaign", "c2", "--policy", "p", monkeypatch=monkeypatch)
    assert code == 2 and not out
    assert message in err and "nothing was imported" in err and "Traceback" not in err
    assert counts(lake) == before


def test_unreadable_files_and_bad_names(tmp_path, monkeypatch):
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    code, _, err = run(
        tmp_path / "lake", str(tmp_path / "x.parquet"), "--campaign", "c", "--policy", "p", monkeypatch=monkeypatch
    )
    assert code == 2 and "cannot be read as Parquet" in err
    code, _, err = run(
        tmp_path / "lake", str(tmp_path / "nope.csv"), "--campaign", "c", "--policy", "p", monkeypatch=monkeypatch
    )
    assert code == 2 and "no such file" in err
    obd_file(tmp_path / "ok.csv", 10, 5, 0.1)
    code, _, err = run(
        tmp_path / "lake", str(tmp_path / "ok.csv"), "--campaign", "a b", "--policy", "p", monkeypatch=monkeypatch
    )
    assert code == 2 and "--campaign 'a b'" in err
