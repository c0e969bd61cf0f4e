"""The demo's pseudonym key: one random key per lake, kept beside the data it keyed.

User ids are stored as a keyed hash (HMAC) of the raw id; with the public development key that
is a plain hash, and e-mail-like ids can be guessed back. So `momento demo`, when no
`MOMENTO_PSEUDONYM_KEY` is set, makes a random key the first time it fills a lake and keeps it
in `<lake>/_secrets/pseudonym.key` (the directory readable by its owner only, the file too), so
the backfill, the service and the simulator all key ids alike, and a restart on the same lake
keeps matching the customers already stored.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from momento.settings import DEV_PSEUDONYM_KEY

SECRETS_DIR = "_secrets"
KEY_FILE = "pseudonym.key"


def key_path(lake: Path) -> Path:
    """Where the demo keeps the pseudonym key of `lake`."""
    return lake / SECRETS_DIR / KEY_FILE


def demo_pseudonym_key(lake: Path, configured: str, lake_has_history: bool) -> tuple[str, str | None]:
    """(the key the demo's programs use on `lake`, a note for the operator or None).

    A key set in the environment (`configured`, anything but the development key) wins and is
    not written anywhere. Otherwise the lake's stored key; otherwise a new random one, stored,
    for a lake without history. A lake with history but no stored key was keyed with the
    development key (before the demo kept a key per lake): changing the key would stop its
    customers from matching, so that lake keeps the development key, and the note says so."""
    if configured != DEV_PSEUDONYM_KEY:
        return configured, None
    path = key_path(lake)
    if path.is_file():
        return path.read_text().strip(), None
    if lake_has_history:
        return DEV_PSEUDONYM_KEY, (
            f"the lake at {lake} was written with the public development pseudonym key; "
            "the demo keeps using it there (start on an empty lake, or set "
            "MOMENTO_PSEUDONYM_KEY, for a secret one)"
        )
    key = secrets.token_urlsafe(32)
    _write_owner_only(path, key)
    return key, None


def _write_owner_only(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner may read, in a directory only its owner may
    enter (modes set explicitly: the umask may be looser)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        os.fchmod(sink.fileno(), 0o600)
        sink.write(text + "\n")
