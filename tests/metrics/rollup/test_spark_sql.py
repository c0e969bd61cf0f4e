"""Every rollup and reduction query can be produced for both engines (metrics/engines/transpile.py):
the DuckDB text is the one definition, its Spark text comes from sqlglot, and a construct with no
Spark form fails here rather than on a cluster."""

from __future__ import annotations

import io
import sys

import pytest

from cli.analyze_lake import run_analyze_lake
from cli.engines import EngineChoice
from metrics import experiments
from metrics.engines.spark import EngineUnavailable, SparkEngine
from metrics.engines.transpile import Untranslatable, to_spark
from metrics.rollup import definitions as defs
from metrics.rollup.fold import Batch
from metrics.rollup.job import rebuild_parts
from metrics.rollup.read import EXAMPLE_AS_OF, MERGED
from momento.settings import load_settings


def rollup_and_reduction_queries() -> dict[str, str]:
    """Every SQL text the rollup job and the experiment reduction run, by name."""
    texts = {f"facts.{t.name}": defs.facts_sql(t.name) for t in defs.FACTS}
    texts |= {f"partials.{source}": defs.partials_sql(source) for source in ("events", "in_events")}
    texts |= {
        f"contributions.{a.name}.{state or 'plain'}": defs.contributions_sql(a.name, 14, state)
        for a in defs.AGGREGATES
        for state in ("", "cur_", "both_")
    }
    texts |= {f"anchors.{family}": sql for family, sql in defs.ANCHOR_SQL.items()}
    texts |= {f"merged.{t.name}": t.merged_sql("(SELECT * FROM rows_of)") for t in (*defs.STATE, *defs.AGGREGATES)}
    texts |= {q.name: q.example_statement().sql for q in MERGED.values()}
    texts |= {q.name: q.example_statement().sql for q in (experiments.STATS, experiments.CUMULATIVE)}
    whole = Batch("SELECT * FROM events", "SELECT * FROM exposures", "SELECT * FROM decisions", {}, EXAMPLE_AS_OF)
    for number, part in enumerate(rebuild_parts(whole, bounds=("4", "b"))):
        texts |= {f"rebuild_part.{number}.events": part.events, f"rebuild_part.{number}.decisions": part.decisions}
    return texts


QUERIES = rollup_and_reduction_queries()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_rollup_and_reduction_query_has_a_spark_form(name):
    spark_sql = to_spark(QUERIES[name])
    assert "epoch_us" not in spark_sql.lower()  # mapped to Spark's name
    assert "$" not in spark_sql  # parameters as :name


def test_a_construct_with_no_spark_form_is_refused_by_name():
    with pytest.raises(Untranslatable, match="md5_number"):
        to_spark("SELECT md5_number(user_id) FROM t")


def test_without_pyspark_the_spark_engine_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # an embedded install: no pyspark
    with pytest.raises(EngineUnavailable, match=r"pip install momento\[spark\]"):
        SparkEngine().spark()


def test_analyze_lake_names_an_unknown_experiment_and_exits_2(small_lake, monkeypatch):
    monkeypatch.setenv("MOMENTO_LAKE", str(small_lake))
    out, err = io.StringIO(), io.StringIO()
    assert run_analyze_lake(load_settings(), EngineChoice(), "exp_nope", out, err) == 2
    assert "unknown experiment 'exp_nope'" in err.getvalue()
    assert not out.getvalue()
