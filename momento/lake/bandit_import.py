"""Logged bandit feedback from another system, into the lake: the Open Bandit Dataset layout.

A file (CSV or Parquet) with the columns `timestamp`, `item_id`, `position`, `click`,
`propensity_score`, and any `user_feature_*` and `user-item_affinity_*` (other columns, such as
a leading row index, are ignored) becomes, per row: a decision of the experience `campaign` by
the logging policy `policy`, showing variant `item_<item_id>` with the row's propensity; its
exposure; and, when `click` is 1, a click event carrying the decision's id at the same time.

The policy's context is the row's position and its numeric feature columns, in file order (the
Open Bandit Dataset's `user_feature_*` are hashed categories: not numbers, they are left out and
named in the report). No logged distribution exists in such files: `action_probabilities` stays
null, so the support check cannot read these decisions (the weight check still can).

Validation comes first and refuses the whole file at its first bad row, naming the line (CSV: the
file's line, the header being line 1; Parquet: the row, from 1) and the column: a missing column,
a propensity outside (0, 1], a time that does not parse, a click other than 0 or 1, a missing
item or position. Then every row is written through the lake's writer in one flush, so nothing is
written for a refused file. Ids are derived from the campaign, the policy and the row's content
and line, so importing the same file again adds nothing: ids already in the lake are skipped, per
table, which also completes an import a crash cut between two tables.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from momento.lake.location import Lake, Location, lake_location
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")
FEATURE_PREFIXES = ("user_feature_", "user-item_affinity_")
JOURNEY = "imported"
ARM = "imported"
CHANNEL = "web"
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ImportRefused(ValueError):
    """The file cannot be imported; `line` and `column` say where (None: the whole file)."""

    def __init__(
        self, message: str, line: int | None = None, column: str | None = None, row_word: str = "line"
    ) -> None:
        where = ", ".join(
            part
            for part in (f"{row_word} {line}" if line is not None else "", f"column {column!r}" if column else "")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.line, self.column = line, column


@dataclass(frozen=True)
class ImportReport:
    """What an import read and added."""

    rows: int
    clicks: int
    decisions_added: int
    exposures_added: int
    clicks_added: int
    features: tuple[str, ...]
    ignored_features: tuple[str, ...]
    context_version: str


def read_log(path: Path) -> tuple[pl.DataFrame, str, int]:
    """The file's rows as read, the word for a row's place ("line"/"row") and the first data row's number."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            return pl.read_parquet(path), "row", 1
        return pl.read_csv(path, infer_schema=False), "line", 2
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ImportRefused(f"{path}: cannot be read as {'Parquet' if parquet else 'CSV'}: {exc}") from None


def validate(frame: pl.DataFrame, row_word: str = "line", first: int = 2) -> pl.DataFrame:
    """The rows typed (ts, item_id, position, click, propensity, features...), or `ImportRefused`
    at the first bad row. `first` is the number of the first data row (2 in a CSV with a header)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ImportRefused(
            f"missing column {missing[0]!r} (required: {', '.join(REQUIRED)})",
            1 if row_word == "line" else None,
            missing[0],
            row_word,
        )
    if not frame.height:
        raise ImportRefused("the file has no rows")
    text = {c: frame[c].cast(pl.String) for c in REQUIRED}
    checks: list[tuple[str, pl.Series, str]] = []
    ts = _times(frame["timestamp"])
    checks.append(("timestamp", ts.is_null(), "unparsable time"))
    for name in ("item_id", "position"):
        checks.append((name, text[name].is_null() | (text[name].str.strip_chars() == ""), "missing value"))
    propensity = text["propensity_score"].str.strip_chars().cast(pl.Float64, strict=False)
    checks.append(
        (
            "propensity_score",
            ~(propensity > 0).fill_null(False) | ~(propensity <= 1).fill_null(False),
            "propensity outside (0, 1]",
        )
    )
    click = text["click"].str.strip_chars().cast(pl.Float64, strict=False)
    checks.append(("click", ~click.is_in([0.0, 1.0]).fill_null(False), "click must be 0 or 1"))
    position = text["position"].str.strip_chars().cast(pl.Float64, strict=False)
    checks.append(("position", position.is_null(), "position must be a number"))
    features, _ = feature_columns(frame)
    values = {c: frame[c].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False) for c in features}
    checks += [
        (c, values[c].is_null() | ~values[c].is_finite().fill_null(False), "not a finite number") for c in features
    ]
    bad = [(int(np.flatnonzero(mask.to_numpy())[0]), column, message) for column, mask, message in checks if mask.any()]
    if bad:
        row, column, message = min(bad)
        shown = frame[column][row]
        raise ImportRefused(f"{message} ({shown!r})", row + first, column, row_word)
    return pl.DataFrame(
        {
            "ts": ts,
            "item_id": text["item_id"].str.strip_chars(),
            "position": position,
            "click": click.cast(pl.Int8),
            "propensity": propensity,
            **values,
        }
    )


def feature_columns(frame: pl.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric feature columns, non-numeric ones) among `user_feature_*` and `user-item_affinity_*`."""
    numeric: list[str] = []
    other: list[str] = []
    for c in frame.columns:
        if c.startswith(FEATURE_PREFIXES):
            values = frame[c].cast(pl.String).str.strip_chars()
            parsed = values.cast(pl.Float64, strict=False)
            (numeric if parsed.null_count() == values.null_count() else other).append(c)
    return numeric, other


def _times(column: pl.Series) -> pl.Series:
    """UTC times, null where a value does not parse (polars first, then ISO 8601 row by row)."""
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime):
        return column.dt.replace_time_zone("UTC") if dtype.time_zone is None else column.dt.convert_time_zone("UTC")
    text = column.cast(pl.String).str.strip_chars()
    parsed = text.str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
    retry = parsed.is_null() & text.is_not_null()
    if retry.any():
        rows = zip(text.to_list(), parsed.to_list(), retry.to_list(), strict=True)
        fixed = [_iso(v) if again else p for v, p, again in rows]
        parsed = pl.Series(column.name, fixed, dtype=pl.Datetime("us", "UTC"))
    return parsed


def _iso(value: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _ids(prefix: str, campaign: str, policy: str, keys: list[str]) -> list[str]:
    return [f"{prefix}{hashlib.blake2b(f'{campaign}|{policy}|{k}'.encode(), digest_size=12).hexdigest()}" for k in keys]


def to_rows(rows: pl.DataFrame, campaign: str, policy: str, features: list[str]) -> dict[str, pl.DataFrame]:
    """The decisions, exposures and click events of validated rows (`validate`)."""
    n = rows.height
    keys = (
        pl.int_range(n, eager=True).cast(pl.String)
        + "|"
        + rows["ts"].cast(pl.String)
        + "|"
        + rows["item_id"]
        + "|"
        + rows["position"].cast(pl.String)
    ).to_list()
    decision_id = _ids("", campaign, policy, keys)
    user_id = _ids("", campaign, "user", keys)
    context = np.column_stack([rows["position"].to_numpy(), *(rows[c].to_numpy() for c in features)]).astype(np.float32)
    version = _version(features)
    decisions = pl.DataFrame(
        {
            "decision_id": decision_id,
            "ts": rows["ts"],
            "user_id": user_id,
            "journey": [JOURNEY] * n,
            "placement": [campaign] * n,
            "channel": [CHANNEL] * n,
            "experience_id": [campaign] * n,
            "arm": [ARM] * n,
            "variant": ("item_" + rows["item_id"]),
            "policy": [policy] * n,
            "propensity": rows["propensity"],
            "reasons": [[]] * n,
            "fallback": [False] * n,
            "consent": [True] * n,
            "latency_us": [0] * n,
            "status": ["ok"] * n,
            "context": pl.Series(list(context), dtype=pl.List(pl.Float32)),
            "context_version": [version] * n,
        },
        schema_overrides={"reasons": pl.List(pl.String)},
    )
    exposures = decisions.select(
        (pl.col("decision_id") + ":x").alias("exposure_id"),
        "decision_id",
        "ts",
        "user_id",
        "placement",
        pl.col("arm"),
        "variant",
        "channel",
    )
    clicked = decisions.filter(rows["click"] == 1)
    events = clicked.select(
        (pl.col("decision_id") + ":c").alias("event_id"),
        "ts",
        pl.col("ts").alias("received_at"),
        "user_id",
        "channel",
        pl.lit("click").alias("event_type"),
        "placement",
        "decision_id",
        pl.col("variant").str.strip_prefix("item_").alias("item_id"),
    )
    return {"decisions": decisions, "exposures": exposures, "events": events}


def _version(features: list[str]) -> str:
    """The name of an imported context's feature set (position, then the numeric features)."""
    names = ["position", *features]
    return "obd-{}-{}".format(len(names), hashlib.blake2b(",".join(names).encode(), digest_size=4).hexdigest())


_EXISTING = {
    "decisions": ("decision_id", "SELECT decision_id AS id FROM decisions WHERE experience_id = $campaign"),
    "exposures": ("exposure_id", "SELECT exposure_id AS id FROM exposures WHERE placement = $campaign"),
    "events": ("event_id", "SELECT event_id AS id FROM events WHERE placement = $campaign AND event_type = 'click'"),
}


def import_bandit_log(lake: Lake, path: Path, campaign: str, policy: str) -> ImportReport:
    """Validate the file at `path`, then add its rows the lake does not hold yet (see the module)."""
    for field, value in (("campaign", campaign), ("policy", policy)):
        if not NAME.match(value):
            raise ImportRefused(f"--{field} {value!r}: 1-64 letters, digits or _ . : -")
    frame, row_word, first = read_log(path)
    rows = validate(frame, row_word, first)
    features, ignored = feature_columns(frame)
    fresh = _not_in_lake(lake_location(lake), campaign, to_rows(rows, campaign, policy, features))
    # One flush of every table (after the decisions' facts, the decisions themselves), buffered
    # whole: the writer never flushes part of the file on its own.
    with LakeWriter(
        lake,
        background=False,
        compact_every_seconds=None,
        queue_limit=3 * rows.height + 1,
        flush_rows=3 * rows.height + 1,
    ) as writer:
        for name in ("events", "exposures", "decisions"):
            if fresh[name].height:
                writer.append(name, fresh[name])
        writer.flush()
    return ImportReport(
        rows.height,
        int(rows["click"].sum()),
        fresh["decisions"].height,
        fresh["exposures"].height,
        fresh["events"].height,
        ("position", *features),
        tuple(ignored),
        fresh["decisions"]["context_version"][0] if fresh["decisions"].height else _version(features),
    )


def _not_in_lake(lake: Location, campaign: str, tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each table's rows whose id the lake does not hold yet (all of them in a new lake)."""
    if not lake.is_dir():
        return tables
    wh = Warehouse(lake)
    try:
        fresh = {}
        for name, (key, sql) in _EXISTING.items():
            known = wh.query(sql, {"campaign": campaign})["id"] if wh.has(name) else pl.Series([], dtype=pl.String)
            fresh[name] = tables[name].filter(~pl.col(key).is_in(known.implode()))
        return fresh
    finally:
        wh.close()
