"""Where the lake lives: a directory on this machine, or a prefix on object storage.

`MOMENTO_LAKE` is a local path (as it always was) or a URI: `s3://bucket/prefix`, `gs://...`,
`az://...`, `abfs[s]://...` — the schemes `deltalake` writes. The credentials and endpoint are
the storage options `deltalake` takes, read from the environment (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AZURE_STORAGE_*`, `GOOGLE_*`, ...)
by `momento.settings`, and kept with the location so every reader and writer of the lake opens
it alike: Delta tables through `deltalake` (`delta`), listings, deletions and DuckDB's reads
through the pyarrow filesystem of the same store (`filesystem`). Those two are imported when
first used: every program reads its settings, and `momento analyze` starts cold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

REMOTE_SCHEMES = frozenset({"s3", "gs", "az", "abfs", "abfss"})
_OPTION_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_")


class LocationError(ValueError):
    """The lake's location cannot be used (an unknown scheme, or a local-only feature on a URI)."""


@dataclass(frozen=True)
class Location:
    """A lake root or a path under it: `uri` is a local path or `scheme://bucket/key`."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def scheme(self) -> str | None:
        """The URI's scheme; None for a local path."""
        head, sep, _ = self.uri.partition("://")
        return head if sep else None

    @property
    def is_local(self) -> bool:
        return self.scheme is None

    @property
    def path(self) -> Path:
        """The local directory; `LocationError` on object storage, for what only works on a disk."""
        if not self.is_local:
            raise LocationError(f"this needs a lake on a local disk, and the lake is {self.uri}")
        return Path(self.uri)

    @property
    def name(self) -> str:
        return PurePosixPath(self.uri).name

    def __truediv__(self, name: str) -> Location:
        return Location(f"{self.uri.rstrip('/')}/{name}", self.storage_options)

    def __str__(self) -> str:
        return self.uri

    # -- Delta tables -------------------------------------------------------------------------

    def is_delta(self) -> bool:
        """Whether a Delta table lives here."""
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(self.uri, storage_options=self.options))

    def delta(self, version: int | None = None) -> DeltaTable:
        """The Delta table here (at `version`, else the newest)."""
        from deltalake import DeltaTable

        return DeltaTable(self.uri, version=version, storage_options=self.options)

    def create_delta(self, schema: pa.Schema, **properties: Any) -> DeltaTable:
        """The Delta table here, created with `schema` (and `name`, `configuration`, ...) unless
        one exists already."""
        from deltalake import DeltaTable

        self.make_dirs()
        return DeltaTable.create(self.uri, schema, mode="ignore", storage_options=self.options, **properties)

    @property
    def options(self) -> dict[str, str] | None:
        """The storage options as `deltalake`'s functions take them."""
        return dict(self.storage_options) if self.storage_options else None

    # -- files --------------------------------------------------------------------------------

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem of this store and this location's path in it."""
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem(), str(Path(self.uri).absolute())
        if self.scheme == "s3":
            return s3_filesystem(self.storage_options), self.uri.partition("://")[2]
        filesystem, path = pafs.FileSystem.from_uri(self.uri)
        return filesystem, path

    def check(self) -> None:
        """`LocationError`, saying why, when the store cannot be reached (else every Delta call
        would retry for a while and end in a long error of its own)."""
        if self.is_local:
            return
        filesystem, path = self.filesystem()
        try:
            filesystem.get_file_info(path)
        except OSError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LocationError(f"cannot reach the lake at {self.uri}: {reason}") from None

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        filesystem, path = self.filesystem()
        return bool(filesystem.get_file_info(path).type == pafs.FileType.Directory)

    def subdirectories(self) -> list[Location]:
        """The directories directly under this one, by name ([] when it does not exist)."""
        import pyarrow.fs as pafs

        filesystem, path = self.filesystem()
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [
            self / info.base_name
            for info in sorted(infos, key=lambda i: i.base_name)
            if info.type == pafs.FileType.Directory
        ]

    def remove(self) -> None:
        """Delete this directory and everything under it."""
        filesystem, path = self.filesystem()
        filesystem.delete_dir(path)

    def make_dirs(self) -> None:
        """Create the directory on a local disk (object storage has no directories to create)."""
        if self.is_local:
            Path(self.uri).mkdir(parents=True, exist_ok=True)


Lake = Location | Path | str
"""What the lake's readers and writers take: a location, or a local path as before."""


def s3_filesystem(options: Mapping[str, str]) -> pafs.S3FileSystem:
    """pyarrow's S3 client configured from the storage options `deltalake` takes."""
    import pyarrow.fs as pafs

    endpoint = options.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {
        "access_key": options.get("AWS_ACCESS_KEY_ID"),
        "secret_key": options.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": options.get("AWS_SESSION_TOKEN"),
        "region": options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION"),
    }
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "http" if endpoint.startswith("http://") else "https"
    return pafs.S3FileSystem(**{key: value for key, value in kwargs.items() if value is not None})


def storage_options(env: Mapping[str, str]) -> dict[str, str]:
    """The object-storage settings in `env`, as `deltalake` takes them (its keys are the variables'
    names). An `http://` endpoint (a local S3-compatible server) is allowed plain HTTP."""
    options = {key: value for key, value in env.items() if key.startswith(_OPTION_PREFIXES) and value}
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options.setdefault("AWS_ALLOW_HTTP", "true")
    return options


def lake_location(value: Lake, env: Mapping[str, str] | None = None) -> Location:
    """`value` as a location: a Location as it is; a path as a local one; a URI of a scheme
    `deltalake` writes with the storage options in `env` (`LocationError` for another scheme)."""
    if isinstance(value, Location):
        return value
    text = str(value)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Location(str(Path(text)))
    if scheme == "file":
        return Location(str(Path(rest)))
    if scheme not in REMOTE_SCHEMES or not rest.strip("/"):
        raise LocationError(
            f"the lake {text!r} is neither a local path nor a URI deltalake writes "
            f"({', '.join(f'{s}://bucket/prefix' for s in sorted(REMOTE_SCHEMES))})"
        )
    return Location(f"{scheme}://{rest.rstrip('/')}", storage_options(env or {}))
