"""Settings from `MOMENTO_*` environment variables, read in this one place.

Every program (service, simulator, cockpit, CLI) calls `load_settings()`; nothing else reads
the environment, so a deployment is described by its environment alone.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from momento.lake.location import Location, lake_location

PROJECT_ROOT = Path(__file__).resolve().parent.parent
N = TypeVar("N", int, float)
DEFAULT_LAKE = Location(str(PROJECT_ROOT / "data" / "lake"))
DEV_PSEUDONYM_KEY = "momento-dev-key"
"""The pseudonym key when none is set: public, so only for a service on loopback (a keyed hash
with a known key is a plain hash, and e-mail-like ids can be guessed back from it)."""


class SettingsError(ValueError):
    """A `MOMENTO_*` variable holds a value that cannot be used."""


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true or false), got {env[name]!r}")


def _at_least(name: str, value: N, low: N) -> N:
    if value < low:
        raise SettingsError(f"{name} must be at least {low}, got {value}")
    return value


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _lake(env: dict[str, str], default: Location) -> Location:
    raw = env.get("MOMENTO_LAKE")
    if not raw:
        return default
    try:
        return lake_location(raw, env)
    except ValueError as exc:
        raise SettingsError(f"MOMENTO_LAKE: {exc}") from exc


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a laptop demo needs."""

    # A local directory or an object-storage URI (s3://bucket/prefix, ...), with the storage
    # options `deltalake` takes from the AWS_* / AZURE_* / GOOGLE_* variables (momento.lake.location).
    lake: Location = DEFAULT_LAKE
    scenario: Path = PROJECT_ROOT / "data" / "scenario.toml"
    service_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    cockpit_port: int = 8501
    # The cockpit's bind address; off loopback it serves only requests its reverse proxy vouches
    # for with this shared secret (see pages/ui.py, require_login).
    cockpit_host: str = "127.0.0.1"
    cockpit_proxy_secret: str | None = field(default=None, repr=False)
    # The cockpit's DuckDB memory (MB): past it queries spill to disk, so the cockpit's size does
    # not follow the history's.
    cockpit_memory_mb: int = 768
    # The rollup job's DuckDB memory (MB): a rebuild's partition and a compaction's sort spill
    # past it.
    rollup_memory_mb: int = 3072
    # Writer: flush when this many rows are buffered or this many seconds have passed.
    flush_rows: int = 10_000
    flush_seconds: float = 1.0
    # Rows the service may hold in memory before it refuses new work with 503 + Retry-After.
    queue_limit: int = 200_000
    compact_every_seconds: float = 60.0
    # Fault injection (drills): extra seconds spent inside every writer flush, and incidents
    # (`latency_spike`, `model_outage`, `error_burst`) switched on for every decision. Off
    # loopback, a decide request's own `incidents` need `allow_drills` and the server key.
    flush_delay_seconds: float = 0.0
    incidents: tuple[str, ...] = ()
    allow_drills: bool = False
    vacuum_retention_hours: float = 1.0
    decision_budget_ms: float = 10.0
    # How long a decision waits for its outcome (a click, a purchase) before it counts as no
    # reward; the service remembers every decision this long (~0.5 kB each).
    attribution_seconds: float = 30 * 60.0
    # Secrets: the key that pseudonymises user ids (keyed hash); off loopback, the server key
    # (every route) and the site key (decisions only: it may sit in a web page).
    pseudonym_key: str = field(default=DEV_PSEUDONYM_KEY, repr=False)
    api_token: str | None = field(default=None, repr=False)
    site_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1_000_000
    max_batch_events: int = 1_000
    # Requests a client (its server key, else its address) may make per second, sustained and
    # in a burst, and how many clients are remembered; 0 requests a second switches it off.
    rate_limit_per_second: float = 1_000.0
    rate_limit_burst: int = 2_000
    rate_limit_clients: int = 10_000

    def __post_init__(self) -> None:
        # A local path stands for the local lake, as it always did.
        object.__setattr__(self, "lake", lake_location(self.lake))


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    defaults = Settings()
    return Settings(
        lake=_lake(env, defaults.lake),
        scenario=Path(env.get("MOMENTO_SCENARIO") or defaults.scenario),
        service_url=env.get("MOMENTO_SERVICE_URL") or defaults.service_url,
        host=env.get("MOMENTO_HOST") or defaults.host,
        port=_int(env, "MOMENTO_PORT", defaults.port),
        cockpit_port=_int(env, "MOMENTO_COCKPIT_PORT", defaults.cockpit_port),
        cockpit_host=env.get("MOMENTO_COCKPIT_HOST") or defaults.cockpit_host,
        cockpit_proxy_secret=env.get("MOMENTO_COCKPIT_PROXY_SECRET") or None,
        cockpit_memory_mb=_at_least(
            "MOMENTO_COCKPIT_MEMORY_MB", _int(env, "MOMENTO_COCKPIT_MEMORY_MB", defaults.cockpit_memory_mb), 128
        ),
        rollup_memory_mb=_at_least(
            "MOMENTO_ROLLUP_MEMORY_MB", _int(env, "MOMENTO_ROLLUP_MEMORY_MB", defaults.rollup_memory_mb), 256
        ),
        flush_rows=_int(env, "MOMENTO_FLUSH_ROWS", defaults.flush_rows),
        flush_seconds=_float(env, "MOMENTO_FLUSH_SECONDS", defaults.flush_seconds),
        queue_limit=_int(env, "MOMENTO_QUEUE_LIMIT", defaults.queue_limit),
        compact_every_seconds=_float(env, "MOMENTO_COMPACT_EVERY_SECONDS", defaults.compact_every_seconds),
        flush_delay_seconds=_float(env, "MOMENTO_FLUSH_DELAY_SECONDS", defaults.flush_delay_seconds),
        incidents=tuple(name.strip() for name in env.get("MOMENTO_INCIDENTS", "").split(",") if name.strip()),
        allow_drills=_bool(env, "MOMENTO_ALLOW_DRILLS", defaults.allow_drills),
        vacuum_retention_hours=_float(env, "MOMENTO_VACUUM_RETENTION_HOURS", defaults.vacuum_retention_hours),
        decision_budget_ms=_float(env, "MOMENTO_DECISION_BUDGET_MS", defaults.decision_budget_ms),
        attribution_seconds=_at_least(
            "MOMENTO_ATTRIBUTION_SECONDS",
            _float(env, "MOMENTO_ATTRIBUTION_SECONDS", defaults.attribution_seconds),
            1.0,
        ),
        pseudonym_key=env.get("MOMENTO_PSEUDONYM_KEY") or defaults.pseudonym_key,
        api_token=env.get("MOMENTO_API_TOKEN") or None,
        site_key=env.get("MOMENTO_SITE_KEY") or None,
        max_body_bytes=_int(env, "MOMENTO_MAX_BODY_BYTES", defaults.max_body_bytes),
        max_batch_events=_int(env, "MOMENTO_MAX_BATCH_EVENTS", defaults.max_batch_events),
        rate_limit_per_second=_at_least(
            "MOMENTO_RATE_LIMIT_PER_SECOND",
            _float(env, "MOMENTO_RATE_LIMIT_PER_SECOND", defaults.rate_limit_per_second),
            0.0,
        ),
        rate_limit_burst=_at_least(
            "MOMENTO_RATE_LIMIT_BURST", _int(env, "MOMENTO_RATE_LIMIT_BURST", defaults.rate_limit_burst), 1
        ),
        rate_limit_clients=_at_least(
            "MOMENTO_RATE_LIMIT_CLIENTS", _int(env, "MOMENTO_RATE_LIMIT_CLIENTS", defaults.rate_limit_clients), 1
        ),
    )
