"""The lake's location: local paths as before, object-storage URIs with their storage options, a
clear refusal of anything else; and the operations every reader and writer does through it, on a
real S3-compatible server (moto's, started by the tests)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from momento.lake.location import Location, LocationError, lake_location, storage_options
from momento.settings import Settings, SettingsError, load_settings


def test_a_local_path_stays_a_local_path(tmp_path):
    lake = lake_location(tmp_path / "lake")
    assert lake.is_local and lake.scheme is None
    assert lake.path == tmp_path / "lake"
    assert (lake / "events").path == tmp_path / "lake" / "events"
    assert lake_location(f"file://{tmp_path}/lake").path == tmp_path / "lake"
    assert Settings(lake=tmp_path / "lake").lake == lake  # a Path in Settings, as the tests always passed


def test_a_uri_keeps_the_storage_options_deltalake_takes():
    env = {
        "MOMENTO_LAKE": "s3://bucket/prefix/",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
        "HOME": "/root",
    }
    lake = load_settings(env).lake
    assert lake.uri == "s3://bucket/prefix" and lake.scheme == "s3" and not lake.is_local
    assert dict(lake.storage_options) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",  # a plain-HTTP endpoint is the operator's choice
    }
    child = lake / "rollups" / "rollup_x"
    assert child.uri == "s3://bucket/prefix/rollups/rollup_x" and child.storage_options == lake.storage_options
    assert "secret" not in repr(lake)
    assert storage_options({"AWS_ENDPOINT_URL": "https://s3.example.com"}) == {
        "AWS_ENDPOINT_URL": "https://s3.example.com"
    }
    for uri in ("gs://bucket/lake", "az://container/lake", "abfss://container/lake"):
        assert lake_location(uri).uri == uri


@pytest.mark.parametrize("uri", ["ftp://host/lake", "http://host/lake", "s3://", "s3:///"])
def test_another_scheme_is_refused_by_name(uri):
    with pytest.raises(LocationError, match="neither a local path nor a URI deltalake writes"):
        lake_location(uri)
    with pytest.raises(SettingsError, match="MOMENTO_LAKE"):
        load_settings({"MOMENTO_LAKE": uri})


def test_a_local_only_feature_on_object_storage_says_so():
    with pytest.raises(LocationError, match="needs a lake on a local disk, and the lake is s3://b/lake"):
        _ = lake_location("s3://b/lake").path


def test_tables_listings_and_removal_on_s3(s3_lake: Location):
    s3_lake.check()
    table = s3_lake / "rollups" / "rollup_t"
    assert not table.is_delta() and not (s3_lake / "rollups").is_dir()
    assert (s3_lake / "rollups").subdirectories() == []
    write_deltalake(table.uri, pa.table({"a": [1, 2]}), storage_options=dict(table.storage_options))
    assert table.is_delta() and table.delta().version() == 0
    assert [child.uri for child in (s3_lake / "rollups").subdirectories()] == [table.uri]
    assert (table / "_delta_log").is_dir()
    table.remove()
    assert not table.is_delta() and (s3_lake / "rollups").subdirectories() == []


def test_local_listings_and_removal(tmp_path: Path):
    lake = lake_location(tmp_path / "lake")
    lake.check()  # nothing to reach
    table = lake / "rollups" / "rollup_t"
    write_deltalake(table.uri, pa.table({"a": [1]}))
    assert [child.path for child in (lake / "rollups").subdirectories()] == [table.path]
    table.remove()
    assert not table.path.exists()
