"""Batch validation: a bad batch is refused with the table and field named."""

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pytest

from momento.lake.schema import TABLES, BatchError, empty_table, to_table

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)


def event(**overrides):
    row = dict(event_id="e1", ts=NOW, received_at=NOW, user_id="ab", channel="web", event_type="page_view")
    row.update(overrides)
    return row


def test_rows_become_a_table_in_the_exact_schema():
    table = to_table("events", [event(), event(event_id="e2", revenue=10)])
    assert table.schema == TABLES["events"]
    assert table.column("revenue").to_pylist() == [None, 10.0]


def test_polars_and_arrow_input_is_cast_to_the_schema():
    frame = pl.DataFrame([event(nps_score=9)])
    table = to_table("events", frame)
    assert table.schema == TABLES["events"]
    assert table.column("nps_score").type == pa.int8()
    assert to_table("events", table).equals(table)


@pytest.mark.parametrize(
    ("rows", "field", "words"),
    [
        ([event(revenue="lots")], "revenue", "expected double"),
        ([event(event_id=None)], "event_id", "required"),
        ([{k: v for k, v in event().items() if k != "channel"}], "channel", "required"),
        ([event(colour="red")], "colour", "unknown field"),
        ([event(ts="yesterday")], "ts", "expected timestamp"),
    ],
)
def test_bad_rows_name_the_field(rows, field, words):
    with pytest.raises(BatchError) as caught:
        to_table("events", rows)
    assert caught.value.field == field
    assert f"events.{field}" in str(caught.value) and words in str(caught.value)


def test_arrow_input_with_a_wrong_type_names_the_field():
    bad = pa.table(
        {
            "event_id": [1],
            "ts": [NOW],
            "received_at": [NOW],
            "user_id": ["u"],
            "channel": ["w"],
            "event_type": ["x"],
            "revenue": ["a"],
        }
    )
    with pytest.raises(BatchError, match=r"events\.revenue"):
        to_table("events", bad)


def test_unknown_table_and_non_list_batches_are_refused():
    with pytest.raises(BatchError, match="unknown table"):
        to_table("clicks", [event()])
    with pytest.raises(BatchError, match="list of rows"):
        to_table("events", event())


def test_empty_tables_have_the_schema():
    for name, schema in TABLES.items():
        assert empty_table(name).schema == schema and empty_table(name).num_rows == 0


def decision(**overrides):
    row = dict(
        decision_id="d1",
        ts=NOW,
        user_id="ab",
        journey="browse",
        placement="homepage_showcase",
        channel="web",
        experience_id="home_showcase",
        arm="treatment",
        variant="b",
        policy="thompson",
        propensity=0.75,
        reasons=["policy_thompson"],
        fallback=False,
        consent=True,
        latency_us=90,
        status="ok",
    )
    row.update(overrides)
    return row


def test_decisions_carry_the_action_distribution_and_the_context_or_leave_them_null():
    rows = [
        decision(
            action_probabilities=[{"variant": "a", "p": 0.25}, {"variant": "b", "p": 0.75}],
            context=[1.0, 0.5],
            context_version="features-2-test",
        ),
        decision(decision_id="d2"),
    ]  # a row from a writer that does not know the columns
    table = to_table("decisions", rows)
    assert table.column("action_probabilities").to_pylist() == [rows[0]["action_probabilities"], None]
    assert table.column("context").type == pa.list_(pa.float32())
    frame = pl.from_arrow(table)  # polars reads and writes the same types back
    assert frame.get_column("action_probabilities").dtype == pl.List(pl.Struct({"variant": pl.String, "p": pl.Float64}))
    assert to_table("decisions", frame).equals(table)


def test_a_malformed_action_distribution_names_the_field():
    with pytest.raises(BatchError, match=r"decisions\.action_probabilities"):
        to_table("decisions", [decision(action_probabilities=[{"variant": "a", "p": "most"}])])
