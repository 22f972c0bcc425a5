"""Small subset files for the CLIP tests: demo drawings, captions in a benchmark pattern."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from fashion.data.captions import compose_caption
from fashion.data.subset import create_subset
from fashion.demo.drawing import draw_garments

# a few attribute combinations (gender, colour, sleeve, category), skewed like the real data
COMBOS = np.array([[0, 17, 3, 16], [0, 2, 1, 2], [0, 1, 2, 13], [1, 6, 2, 13], [0, 3, 3, 12],
                   [0, 8, 1, 4]])  # fmt: skip
WEIGHTS = np.array([0.35, 0.2, 0.15, 0.1, 0.1, 0.1])


# an outfit no train image shows: its caption is new to training
UNSEEN_COMBO = np.array([1, 2, 1, 13])


def write_subset(path: Path, n: int, seed: int, n_new: int = 0) -> None:
    """A subset file of `n` drawn garments (duplicate captions included). The last `n_new`
    show `UNSEEN_COMBO`, and every odd row is a product (folder) of its own."""
    rng = np.random.default_rng(seed)
    codes = COMBOS[rng.choice(len(COMBOS), n, p=WEIGHTS)]
    codes[n - n_new :] = UNSEEN_COMBO
    table = {
        "index": np.arange(n),
        # even rows: products every file shares; odd rows: products of this file only
        "name": [f"img/{f'New_{seed}' if i % 2 else 'Item'}_{i}/img_{i:08d}.jpg" for i in range(n)],
        "caption": [compose_caption(*row) for row in codes],
        "gender": codes[:, 0], "color": codes[:, 1], "sleeve": codes[:, 2],
        "category": codes[:, 3],
        "word_ids": [np.arange(5)] * n,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        images, segmentation = create_subset(f, n, table)
        drawn, seg = draw_garments(*codes.T, rng)
        images[:] = np.round(drawn * 255).astype(np.uint8)
        segmentation[:] = seg


def write_subsets(root: Path, n_train: int = 96, n_test: int = 32, n_new: int = 4) -> None:
    """Train and test files; test has `n_new` unseen captions, 16 new and 16 seen products."""
    write_subset(root / "train.h5", n_train, seed=0)
    write_subset(root / "test.h5", n_test, seed=1, n_new=n_new)
