"""Files in the Open Bandit Dataset's layout, generated, for the import's and the Policy lab's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def obd_file(path: Path, n: int, seed: int, click_rate: float, items: int = 5) -> pl.DataFrame:
    """A file laid out like the Open Bandit Dataset (with its leading unnamed index column)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-11-24T00:00:00", "us")
    frame = pl.DataFrame(
        {
            "": np.arange(n),
            "timestamp": [
                f"{t}+00:00".replace("T", " ")
                for t in (start + np.sort(rng.integers(0, 7 * 86_400e6, n)).astype("timedelta64[us]")).astype(str)
            ],
            "item_id": rng.integers(0, items, n),
            "position": rng.integers(1, 4, n),
            "click": (rng.random(n) < click_rate).astype(int),
            "propensity_score": rng.choice([1 / items, 0.5, 0.05], n),
            "user_feature_0": [f"{h:032x}" for h in rng.integers(0, 2**31, n)],
            "user-item_affinity_0": rng.random(n).round(4),
            "user-item_affinity_1": rng.random(n).round(4),
        }
    )
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return frame
