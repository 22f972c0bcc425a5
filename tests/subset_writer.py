"""Small subset files in the `data/subset/{split}.h5` format (`fashion.data.subset`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from fashion.data.attributes import ATTRIBUTES, CATEGORY
from fashion.data.captions import compose_caption
from fashion.data.subset import STR_DTYPE

SIZE = 128


def make_rows(n: int, seed: int, start: int = 0) -> list[dict]:
    """`n` rows with random codes, captions that name them and folder names that match."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        codes = {
            "gender": int(rng.integers(0, 2)),
            "color": int(rng.integers(1, 18)),
            "sleeve": int(rng.integers(1, 5)),
            "category": int(rng.integers(1, 20)),
        }
        folder = f"Demo_Item_{CATEGORY[codes['category']].capitalize()}"
        rows.append(
            {
                "index": start + i,
                "name": f"img/{folder}/img_{start + i:08d}.jpg",
                "caption": compose_caption(**codes),
                **codes,
            }
        )
    return rows


def write_subset(path: Path, rows: Sequence[dict], skip: Sequence[str] = (), seed: int = 0) -> Path:
    """A subset file holding `rows` (as from `make_rows`), random pixels and masks.

    Datasets named in `skip` are left out (to test bad input).
    """
    rng = np.random.default_rng(seed)
    n = len(rows)
    data = {
        "images": rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8),
        "segmentation": rng.integers(0, 7, (n, SIZE, SIZE), dtype=np.uint8),
        "index": np.array([r["index"] for r in rows], dtype=np.int64),
        "name": np.array([r["name"] for r in rows], dtype=object),
        "caption": np.array([r["caption"] for r in rows], dtype=object),
        **{k: np.array([r[k] for r in rows], dtype=np.int16) for k in ATTRIBUTES},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key in skip:
                continue
            dtype = STR_DTYPE if value.dtype == object else value.dtype
            f.create_dataset(key, data=value, dtype=dtype)
        if "word_ids" not in skip:
            words = f.create_dataset("word_ids", (n,), dtype=h5py.vlen_dtype(np.int16))
            for i in range(n):
                words[i] = np.arange(1, 1 + len(rows[i]["caption"].split()), dtype=np.int16)
    return path
