"""The evaluation protocol's splits: product-disjoint validation, and the test images new to
training, checked on hand-made names and on the real annotation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashion.core.stage import PipelineError
from fashion.data.release import read_annotations, read_split
from fashion.data.splits import (
    new_to_training,
    product_folder,
    train_validation_rows,
    validation_rows,
)


def names_of(folder_sizes: list[int]) -> list[str]:
    """nameList-style names: folder k holds folder_sizes[k] images, folders interleaved."""
    names = [f"img/Item_{k}/img_{i:08d}.jpg" for k, n in enumerate(folder_sizes) for i in range(n)]
    return list(np.random.default_rng(5).permutation(names))


def test_product_folder_is_the_name_list_folder() -> None:
    assert product_folder("img/Sheer_Pleated-Front_Blouse/img_00000001.jpg") == (
        "img/Sheer_Pleated-Front_Blouse"
    )


def test_validation_takes_whole_folders_until_its_size() -> None:
    sizes = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    names = names_of(sizes)
    for seed in range(5):
        val = validation_rows(names, 20, seed=seed)
        rest = np.setdiff1d(np.arange(len(names)), val)
        val_folders = {product_folder(names[i]) for i in val}
        rest_folders = {product_folder(names[i]) for i in rest}
        assert not val_folders & rest_folders  # product-disjoint
        assert np.all(np.diff(val) > 0)
        # whole folders until >= 20: the last folder taken overshoots by less than its size
        assert 20 <= len(val) < 20 + max(sizes)
    val = validation_rows(names, 20, seed=0)
    assert np.array_equal(val, validation_rows(names, 20, seed=0))  # seeded
    others = [validation_rows(names, 20, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(val, o) for o in others)


def test_validation_size_errors_name_the_param() -> None:
    names = names_of([2, 2, 2])
    assert len(validation_rows(names, 0, seed=0)) == 0
    with pytest.raises(PipelineError, match="split.validation_images"):
        validation_rows(names, 6, seed=0)
    with pytest.raises(PipelineError, match="leaves no train image"):
        validation_rows(names_of([5]), 2, seed=0)


def test_train_and_validation_rows_partition_the_train_table() -> None:
    table = pd.DataFrame({"name": names_of([4, 4, 4, 4, 4])})
    train, val = train_validation_rows(table, {"validation_images": 5, "seed": 3})
    assert len(val) == 8 and len(train) == 12  # two folders of 4
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(20))


def test_new_to_training_masks() -> None:
    masks = new_to_training(
        captions=["a red tee.", "a blue coat.", "a red tee."],
        names=["img/A/1.jpg", "img/B/2.jpg", "img/C/3.jpg"],
        training_captions=["a red tee.", "a red dress."],
        training_names=["img/A/9.jpg", "img/B/8.jpg"],
    )
    assert masks["unseen_caption"].tolist() == [False, True, False]
    assert masks["product_disjoint"].tolist() == [False, False, True]


def test_real_annotations_give_the_published_counts(real_annotations: Path) -> None:
    ann = read_annotations(real_annotations / "language_original.mat")
    split = read_split(real_annotations / "ind.mat", len(ann))
    masks = new_to_training(
        [ann.captions[i] for i in split.test], [ann.names[i] for i in split.test],
        [ann.captions[i] for i in split.train], [ann.names[i] for i in split.train],
    )  # fmt: skip
    assert int(masks["unseen_caption"].sum()) == 278
    assert int(masks["product_disjoint"].sum()) == 269
    # a real-size validation split stays product-disjoint and near its size
    names = [ann.names[i] for i in split.train]
    val = validation_rows(names, 2000, seed=0)
    rest = np.setdiff1d(np.arange(len(names)), val)
    assert 2000 <= len(val) < 2200
    assert not {product_folder(names[i]) for i in val} & {product_folder(names[i]) for i in rest}
