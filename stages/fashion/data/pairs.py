"""The benchmark's official redress pairs: each test image and the test image whose sentence
describes the outfit to put on it.

`ind.mat`'s `test_set_pair_ind[k]` is, for the k-th test image (in `test_ind` order), the
1-based index of another test image; that image's sentence is the target of test image k (the
authors' test script conditions image `test_ind[k]` on the sentence of `test_set_pair_ind[k]`).
`read_split` makes both 0-based; these functions check the pairs and map them onto the rows of
a prepared test subset, which may hold only a sample of the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fashion.core.stage import PipelineError
from fashion.data.release import Split
from fashion.data.subset import open_subset

# The test subset's dataset of redress targets (written by the prepare stage).
REDRESS_TARGET = "redress_target"


def redress_pairs(split: Split, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) 0-based benchmark indices, int64, in `test_ind` order.

    Checked, since a later stage would otherwise redress with a training sentence or shift
    every pair by one: one target per test image, and every target a test image. `path` is
    the `ind.mat` the split came from, named in errors.
    """
    source = np.asarray(split.test, dtype=np.int64)
    target = np.asarray(split.test_pair, dtype=np.int64)
    if len(target) != len(source):
        raise PipelineError(
            f"{path}: 'test_set_pair_ind' holds {len(target)} indices for "
            f"{len(source)} test images ('test_ind'); expected one per test image"
        )
    outside = ~np.isin(target, source)
    if outside.any():
        k = int(np.argmax(outside))
        raise PipelineError(
            f"{path}: 'test_set_pair_ind' entry {k + 1} points to image {target[k] + 1}, which "
            f"is not a test image ({int(outside.sum())} such entries; indices 1-based)"
        )
    return source, target


def subset_pairs(
    index: np.ndarray, source: np.ndarray, target: np.ndarray, path: str | Path = "test subset"
) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, target rows) of a test subset whose `index` column (ascending 0-based
    benchmark indices) holds a sample of the test split; pairs with either image outside the
    sample are dropped. Rows are int64, in the pairs' (`test_ind`) order; `path` names the
    subset file in errors."""
    index = np.asarray(index, dtype=np.int64)
    if np.any(np.diff(index) <= 0):
        raise PipelineError(f"{path}: 'index' is not strictly ascending (see fashion.data.subset)")
    source_rows, source_in = _rows(index, np.asarray(source, dtype=np.int64))
    target_rows, target_in = _rows(index, np.asarray(target, dtype=np.int64))
    keep = source_in & target_in
    return source_rows[keep], target_rows[keep]


def _rows(index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row of each value in the sorted `index`, and whether it is there at all."""
    if not len(index):
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    rows = np.minimum(np.searchsorted(index, values), len(index) - 1).astype(np.int64)
    return rows, index[rows] == values


def redress_rows(test_file: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, target rows) of the official pairs whose two images are both in the
    prepared test subset `test_file`, in the subset's row order (ascending benchmark index)."""
    with open_subset(test_file) as f:
        if REDRESS_TARGET not in f:
            raise PipelineError(
                f"{test_file}: no '{REDRESS_TARGET}' dataset (prepared by an older version: "
                "run the prepare stage again)"
            )
        index, target = f["index"][()], f[REDRESS_TARGET][()]
    return subset_pairs(index, index, target, test_file)


def validation_pairs(rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Redress pairs within the validation split, where the benchmark has none: each of
    `rows` paired with another of them (a seeded cycle through all), for choosing redress
    defaults without the test pairs."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 2:
        raise PipelineError("redress on the validation split needs 2 or more validation images")
    order = np.random.default_rng([seed, 3]).permutation(rows)
    target = dict(zip(order.tolist(), np.roll(order, -1).tolist(), strict=True))
    return rows, np.array([target[r] for r in rows.tolist()], dtype=np.int64)
