"""DuckDB SQL to Spark SQL, through sqlglot: the metric SQL is written once, in DuckDB's dialect.

sqlglot carries the syntax across (`FILTER (WHERE ...)`, `//`, `$name` parameters as `:name`,
types, joins). A function sqlglot does not know is passed through by name, which is right only
when both engines spell it alike: `FUNCTIONS` maps the few that are not (DuckDB's fast epoch
arithmetic, which has no portable spelling as fast on DuckDB), and any other unknown function
is refused, so a new construct fails the test that produces every query for both engines
(tests/metrics/rollup/test_spark_sql.py) instead of failing on a cluster.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

FUNCTIONS = {"epoch_us": "unix_micros", "make_timestamptz": "timestamp_micros"}
"""DuckDB functions sqlglot passes through unchanged -> their Spark names: the same argument and
the same result (microseconds since the epoch of a UTC timestamp, and back)."""


class Untranslatable(ValueError):
    """A DuckDB construct with no Spark form: rewrite it portably in the DuckDB source."""


@functools.lru_cache(maxsize=1024)
def to_spark(sql: str) -> str:
    """`sql` (DuckDB) as Spark SQL; `Untranslatable` names what does not carry across."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    for node in list(tree.find_all(exp.Anonymous)):
        name = node.name.lower()
        if name not in FUNCTIONS:
            raise Untranslatable(f"function {node.name}() has no known Spark form: {node.sql(dialect='duckdb')}")
        node.replace(exp.Anonymous(this=FUNCTIONS[name], expressions=node.expressions))
    try:
        return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        raise Untranslatable(str(exc)) from exc
