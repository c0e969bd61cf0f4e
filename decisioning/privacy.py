"""Pseudonymisation: ids that look like real customers are stored as keyed hashes.

HMAC-SHA256 with the deployment's secret (`MOMENTO_PSEUDONYM_KEY`): the same customer maps
to the same id everywhere (so analysis, assignment and erasure still work) while the lake
never holds the raw id, and nobody without the key can reverse or recompute it.
"""

from __future__ import annotations

import hmac


def pseudonymise(raw_id: str, key: str) -> str:
    """The stored form of `raw_id`: 32 hexadecimal characters."""
    return hmac.digest(key.encode(), raw_id.encode(), "sha256").hex()[:32]
