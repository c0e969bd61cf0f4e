"""The rendered SQL of every panel query (`metrics.queries.QUERIES`), formatted, is checked in
under tests/metrics/golden_sql/<name>.sql: a change to the generated SQL fails here until its
golden file changes with it, so every SQL change is seen in review.

Regenerate them after an intended change with

    pytest tests/metrics/test_golden_sql.py --update-golden

and read the diff. A new query gets its file the same way; a file whose query is gone fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics.queries import QUERIES
from metrics.sql.query import Query, parameters, pretty

GOLDEN = Path(__file__).parent / "golden_sql"


def golden(query: Query) -> str:
    """The golden file's text: what the query is, what it binds, then its SQL (no filter, the
    query's example arguments)."""
    sql = query.example_statement().sql
    binds = ", ".join(f"${name}" for name in parameters(sql)) or "nothing"
    arguments = ", ".join(f"{key}={value!r}" for key, value in query.example.items())
    header = [f"-- {query.name}: {query.description}", f"-- binds: {binds}"]
    if arguments:
        header.append(f"-- rendered with: {arguments}")
    return "\n".join([*header, pretty(sql), ""])


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_the_generated_sql_matches_its_golden_file(name, request):
    path = GOLDEN / f"{name}.sql"
    text = golden(QUERIES[name])
    if request.config.getoption("update_golden", default=False):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file for {name}: run pytest {Path(__file__).name} --update-golden"
    assert path.read_text(encoding="utf-8") == text, (
        f"the SQL of {name} changed: if intended, run pytest tests/metrics/{Path(__file__).name} --update-golden "
        "and review the diff of its golden file"
    )


def test_every_golden_file_has_its_query():
    stale = sorted(p.stem for p in GOLDEN.glob("*.sql") if p.stem not in QUERIES)
    assert not stale, f"golden files of queries that no longer exist: {stale}"
