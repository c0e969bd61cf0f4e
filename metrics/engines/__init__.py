"""Engines other than the embedded DuckDB that run the rollups' SQL (`metrics.rollup.session`)."""
