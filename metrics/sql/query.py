"""A panel query: its name, what it answers, how its SQL is written and the values it binds; and
that SQL as people read it.

Every number the cockpit shows comes from a `Query` declared next to the code that reduces its
rows (`metrics/executive.py`, `metrics/health.py`, ...), and `metrics.queries` lists them all.
The panels run `query.statement(...)`; the cockpit's "How this is computed", `momento sql` and
the golden files (`tests/metrics/golden_sql/`) render that same statement, so the SQL shown is
the SQL that ran. Rendering formats with sqlglot's pretty printer (DuckDB dialect) and, for
display only, writes the bound values in as literals; execution always binds them as
parameters (`Warehouse.query`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import polars as pl
import sqlglot
from sqlglot import exp

from metrics.filters import Filters
from momento.lake.warehouse import Warehouse

DIALECT = "duckdb"


class Statement(NamedTuple):
    """SQL text and the values of its parameters (`$name`), as `Warehouse.query` takes them."""

    sql: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Query:
    """One query a panel runs.

    `build(filters, **arguments)` writes the statement: arguments either shape the text (a time
    grain, the metrics to compute, whether one experiment is picked; always from the code's own
    constants) or are bound as parameters, like the filters. `example` holds the arguments the
    golden file and `momento sql` render it with; `metrics` the catalogue entries
    (`momento.kpis`) it computes; `method` what is done with its rows to get the numbers shown."""

    name: str
    description: str
    build: Callable[..., Statement]
    example: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    method: str = ""
    over: Literal["lake", "aggregates"] = "lake"
    """What the SQL reads: the lake's tables (through the warehouse), or the rollups' aggregates
    (`metrics.rollup.read.run_on`: each aggregate as a relation of its name)."""

    def statement(self, filters: Filters, **arguments: Any) -> Statement:
        return self.build(filters, **arguments)

    def run(self, warehouse: Warehouse, filters: Filters, **arguments: Any) -> pl.DataFrame:
        """The query's rows for `filters` (and `arguments`) from the warehouse."""
        return warehouse.query(*self.statement(filters, **arguments))

    def example_statement(self, **overrides: Any) -> Statement:
        """The statement with no filter and the example arguments (`overrides` replace those of
        them the query takes; others are ignored)."""
        chosen = {key: overrides.get(key, value) for key, value in self.example.items()}
        return self.statement(Filters(), **chosen)


def parameters(sql: str) -> tuple[str, ...]:
    """The names of the parameters `sql` binds, in order of first use."""
    return tuple(dict.fromkeys(re.findall(r"\$([A-Za-z_]\w*)", sql)))


@functools.lru_cache(maxsize=256)
def pretty(sql: str) -> str:
    """`sql` formatted for reading (one clause a line, indented), parameters left as `$name`."""
    return sqlglot.parse_one(sql, read=DIALECT).sql(dialect=DIALECT, pretty=True)


def display(statement: Statement) -> str:
    """The statement formatted, with each parameter written in as the literal it was bound to and
    the filters that bind nothing (`$f_segment IS NULL OR ...` with no segment) folded away.
    For reading only: what runs binds parameters."""
    used = {name: _frozen(statement.params[name]) for name in parameters(statement.sql) if name in statement.params}
    return _display(statement.sql, tuple(sorted(used.items())))


@functools.lru_cache(maxsize=256)
def _display(sql: str, params: tuple[tuple[str, Any], ...]) -> str:
    values = dict(params)
    tree = sqlglot.parse_one(sql, read=DIALECT)
    for test in list(tree.find_all(exp.Is)):
        if (
            isinstance(test.expression, exp.Null)
            and isinstance(test.this, exp.Placeholder)
            and test.this.name in values
        ):
            test.replace(exp.Boolean(this=values[test.this.name] is None))
    for placeholder in list(tree.find_all(exp.Placeholder)):
        if placeholder.name in values:
            placeholder.replace(_literal(values[placeholder.name]))
    return _fold(tree).sql(dialect=DIALECT, pretty=True)


def _frozen(value: Any) -> Any:
    """A hashable copy of a bound value (lists become tuples)."""
    return tuple(value) if isinstance(value, list) else value


def _literal(value: Any) -> exp.Expr:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.build("TIMESTAMPTZ"))
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return exp.Array(expressions=[_literal(v) for v in value])
    return exp.Literal.string(str(value))


def _fold(tree: exp.Expr) -> exp.Expr:
    """Fold the TRUE/FALSE left by binding: `TRUE OR x` -> TRUE, `FALSE OR x` -> x, `TRUE AND x` -> x,
    `(TRUE)` -> TRUE, children before their parents (one pass); then drop the parentheses left
    around a single condition of an AND/OR, and a query's `WHERE TRUE`. Only connectives with a
    constant side are touched."""
    for node in reversed(list(tree.dfs())):
        folded = _folded(node)
        if folded is not node:
            if node is tree:
                tree = folded
            else:
                node.replace(folded)
    for paren in list(tree.find_all(exp.Paren)):
        if isinstance(paren.this, exp.Predicate) and isinstance(paren.parent, exp.And | exp.Or | exp.Where):
            paren.replace(paren.this)
    for where in list(tree.find_all(exp.Where)):
        if isinstance(where.this, exp.Boolean) and where.this.this and isinstance(where.parent, exp.Select):
            where.pop()
    return tree


def _folded(node: exp.Expr) -> exp.Expr:
    """`node` with a constant side folded away (itself when there is none)."""
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.Boolean):
        return node.this
    if isinstance(node, exp.Or | exp.And):
        absorbing = isinstance(node, exp.Or)
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            if isinstance(side, exp.Boolean):
                return side if side.this is absorbing else other
    return node
