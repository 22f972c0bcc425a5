"""The evaluation protocol's splits: train, a product-disjoint validation split carved from it,
and test; and the test images that are new to training (unseen caption, unseen product).

A product is a `nameList` folder (`img/<product>/img_00000001.jpg`): the benchmark holds
several photos of one garment, so a split that shares folders with train scores recognising
the same product. On the real annotations 97.0% of test images share a folder with a train
image and 96.9% of test captions occur word for word in train.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashion.core.params import PARAMS_FILE, capped_size, section
from fashion.core.stage import PipelineError
from fashion.data.subset import read_table, sample_rows, subset_path

EVALUATED_SPLITS = ("test", "validation")


def product_folder(name: str) -> str:
    """The product of an image: the folder of its `nameList` entry."""
    return posixpath.dirname(name)


def validation_rows(names: Sequence[str], n_images: int, seed: int) -> np.ndarray:
    """Rows (ascending) of whole product folders, taken in a seeded order until `n_images`.

    No folder is shared between the returned rows and the others, so the split can hold a
    few images more than `n_images` (the last folder taken is taken whole). 0 gives none.
    """
    if n_images < 0 or (n_images and n_images >= len(names)):
        raise PipelineError(
            f"{PARAMS_FILE}: split.validation_images={n_images} must be in 0..{len(names) - 1} "
            f"for {len(names)} train images"
        )
    if n_images == 0:
        return np.zeros(0, dtype=np.int64)
    folders = pd.Series([product_folder(n) for n in names])
    unique = folders.unique()
    order = np.random.default_rng(seed).permutation(len(unique))
    sizes = folders.value_counts()[unique[order]].to_numpy()
    taken = unique[order[: int(np.searchsorted(np.cumsum(sizes), n_images)) + 1]]
    rows = np.flatnonzero(folders.isin(set(taken)).to_numpy())
    if len(rows) == len(names):
        raise PipelineError(
            f"{PARAMS_FILE}: split.validation_images={n_images} leaves no train image "
            f"outside the validation folders"
        )
    return rows


def train_validation_rows(
    train: pd.DataFrame, split: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to train on, validation rows) of the train subset's table, by the `split` params."""
    val = validation_rows(
        train["name"].tolist(), int(split["validation_images"]), int(split["seed"])
    )
    return np.setdiff1d(np.arange(len(train)), val), val


def new_to_training(
    captions: Sequence[str],
    names: Sequence[str],
    training_captions: Sequence[str],
    training_names: Sequence[str],
) -> dict[str, np.ndarray]:
    """Boolean masks over the evaluated images: `unseen_caption` (its caption text occurs
    nowhere in training) and `product_disjoint` (no training image of its folder)."""
    seen_captions = set(training_captions)
    seen_folders = {product_folder(n) for n in training_names}
    return {
        "unseen_caption": np.array([c not in seen_captions for c in captions], dtype=bool),
        "product_disjoint": np.array(
            [product_folder(n) not in seen_folders for n in names], dtype=bool
        ),
    }


@dataclasses.dataclass(frozen=True)
class EvaluatedSplit:
    """The split the evaluation stages score (`split.evaluate`) and what counts as training.

    `rows` index `path` (test.h5, or train.h5 for the validation split); `training_rows`
    index train.h5: every train image outside the evaluated split (for the test split, the
    validation images too).
    """

    name: str
    path: Path
    rows: np.ndarray
    table: pd.DataFrame  # the rows' table, in `rows` order
    training_path: Path
    training_rows: np.ndarray
    training: pd.DataFrame  # the training rows' table, in `training_rows` order

    def sample(self, n: int | str, seed: int, param: str) -> EvaluatedSplit:
        """The same split cut to a fixed-seed sample of `n` rows ("all": every row). A
        larger `n` than the split holds (the validation split is small) takes every row, with
        a warning."""
        holder = f"the {self.name} split holds {len(self.rows)} images"
        n = capped_size(n, len(self.rows), param, holder)
        chosen = sample_rows(len(self.rows), n, seed, param)
        return dataclasses.replace(
            self, rows=self.rows[chosen], table=self.table.iloc[chosen].reset_index(drop=True)
        )

    def new_to_training(self) -> dict[str, np.ndarray]:
        """`new_to_training` masks of the split's rows against the training rows."""
        return new_to_training(
            self.table["caption"].tolist(), self.table["name"].tolist(),
            self.training["caption"].tolist(), self.training["name"].tolist(),
        )  # fmt: skip


def evaluated_split(params: dict[str, Any], subset: str | Path) -> EvaluatedSplit:
    """The split named by `split.evaluate` (test or validation) of the subset folder."""
    split = section(params, "split")
    name = split.get("evaluate", "test")
    if name not in EVALUATED_SPLITS:
        raise PipelineError(
            f"{PARAMS_FILE}: split.evaluate must be one of {list(EVALUATED_SPLITS)}, got {name!r}"
        )
    train_path = subset_path(subset, "train")
    train = read_table(train_path)
    train_rows, val_rows = train_validation_rows(train, split)
    if name == "validation":
        return EvaluatedSplit(
            name, train_path, val_rows, train.iloc[val_rows].reset_index(drop=True),
            train_path, train_rows, train.iloc[train_rows].reset_index(drop=True),
        )  # fmt: skip
    test_path = subset_path(subset, "test")
    test = read_table(test_path)
    all_train = np.arange(len(train))
    return EvaluatedSplit(name, test_path, np.arange(len(test)), test, train_path, all_train, train)


def matched_sample(params: dict[str, Any], subset: str | Path) -> EvaluatedSplit:
    """The matched set's real images: a fixed-seed sample of `reference.n_images` images of the
    evaluated split (`reference.seed`). `generate` draws one image from each one's caption;
    `reference` and `evaluate` compare with them."""
    p = section(params, "reference")
    return evaluated_split(params, subset).sample(
        p["n_images"], int(p["seed"]), "reference.n_images"
    )
