"""The official redress pairs of `ind.mat` (fashion.data.pairs): a hand-made split, written in
the released format and read back, with its known pairs; and the errors of bad pair lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashion.core.stage import PipelineError
from fashion.data.pairs import redress_pairs, subset_pairs
from fashion.data.release import Split, read_split
from fashion.demo.release_writer import write_split

N_IMAGES = 10
# 1-based, as stored: test images 2, 5, 7, 10 (not in ascending order, to pin `test_ind` order).
TRAIN = [1, 3, 4, 6, 8, 9]
TEST = [5, 2, 10, 7]
PAIRS = [7, 10, 2, 7]  # image 5 takes image 7's sentence, 2 takes 10's, 10 takes 2's, 7 takes 7's


def written_split(tmp_path: Path, test_pair: list[int]) -> tuple[Path, Split]:
    path = tmp_path / "ind.mat"
    write_split(path, np.array(TRAIN), np.array(TEST), np.array(test_pair))
    return path, read_split(path, N_IMAGES)


def test_pairs_are_the_0_based_test_images_and_their_targets(tmp_path: Path) -> None:
    path, split = written_split(tmp_path, PAIRS)
    source, target = redress_pairs(split, path)
    np.testing.assert_array_equal(source, [4, 1, 9, 6])
    np.testing.assert_array_equal(target, [6, 9, 1, 6])
    assert source.dtype == target.dtype == np.int64


def test_subset_rows_keep_only_pairs_inside_the_sample(tmp_path: Path) -> None:
    path, split = written_split(tmp_path, PAIRS)
    source, target = redress_pairs(split, path)
    # A sample of the test split without image 5 (0-based 4): rows 0, 1, 2 hold 1, 6, 9.
    index = np.array([1, 6, 9])
    rows_source, rows_target = subset_pairs(index, source, target)
    # 4 -> 6 is dropped (source not sampled); 1 -> 9, 9 -> 1, 6 -> 6 stay, in test_ind order.
    np.testing.assert_array_equal(rows_source, [0, 2, 1])
    np.testing.assert_array_equal(rows_target, [2, 0, 1])
    np.testing.assert_array_equal(index[rows_source], [1, 9, 6])
    np.testing.assert_array_equal(index[rows_target], [9, 1, 6])
    assert rows_source.dtype == rows_target.dtype == np.int64


def test_subset_rows_of_the_whole_split_keep_every_pair(tmp_path: Path) -> None:
    path, split = written_split(tmp_path, PAIRS)
    source, target = redress_pairs(split, path)
    index = np.sort(split.test)
    rows_source, rows_target = subset_pairs(index, source, target)
    np.testing.assert_array_equal(index[rows_source], source)
    np.testing.assert_array_equal(index[rows_target], target)


def test_subset_rows_of_a_sample_missing_every_target_are_empty() -> None:
    rows_source, rows_target = subset_pairs(np.array([0, 3]), np.array([0, 3]), np.array([5, 8]))
    assert rows_source.shape == rows_target.shape == (0,)
    empty = subset_pairs(np.array([], np.int64), np.array([0]), np.array([1]))
    assert empty[0].shape == empty[1].shape == (0,)


def test_unsorted_subset_index_is_an_error() -> None:
    with pytest.raises(PipelineError, match=r"test.h5: 'index' is not strictly ascending"):
        subset_pairs(np.array([6, 1]), np.array([1]), np.array([6]), "test.h5")


def test_a_target_outside_the_test_split_is_an_error(tmp_path: Path) -> None:
    path, split = written_split(tmp_path, [7, 3, 2, 7])  # image 3 is a training image
    with pytest.raises(PipelineError, match=r"ind\.mat: 'test_set_pair_ind' entry 2 .* image 3"):
        redress_pairs(split, path)


def test_a_pair_list_of_another_length_is_an_error(tmp_path: Path) -> None:
    path, split = written_split(tmp_path, [7, 10, 2])
    with pytest.raises(PipelineError, match=r"ind\.mat: 'test_set_pair_ind' holds 3 .* 4 test"):
        redress_pairs(split, path)
