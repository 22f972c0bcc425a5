"""The masks of redress (fashion.inpaint.masks): the garment mask against hand-made
segmentations, the class names of params.yaml, random training masks, the composite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashion.core.stage import PipelineError
from fashion.data.attributes import SEGMENTATION
from fashion.inpaint.masks import (
    DEFAULT_MASK_CLASSES,
    class_ids,
    composite,
    garment_mask,
    random_masks,
)

# 0 background, 1 hair, 2 face, 3 upper clothes, 4 lower clothes, 5 legs, 6 arms: garment
# classes in three corners (on the border) and one in the middle.
SEGMENTATION_8X8 = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 3],
        [0, 1, 1, 0, 0, 0, 0, 0],
        [0, 2, 2, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 4, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [6, 0, 0, 0, 0, 0, 5, 5],
    ],
    dtype=np.uint8,
)


def grid(rows: str) -> np.ndarray:
    """A bool map drawn with '#' (True) and '.' (False), one line per row."""
    return np.array([[c == "#" for c in line.split()] for line in rows.strip().splitlines()])


UNION = grid(
    """
    . . . . . . . #
    . . . . . . . .
    . . . . . . . .
    . . . . . . . .
    . . . . # . . .
    . . . . . . . .
    . . . . . . . .
    # . . . . . # #
    """
)
DILATED_1 = grid(
    """
    . . . . . . # #
    . . . . . . # #
    . . . . . . . .
    . . . # # # . .
    . . . # # # . .
    . . . # # # . .
    # # . . . # # #
    # # . . . # # #
    """
)


def test_default_classes_are_everything_but_background_hair_and_face() -> None:
    ids = class_ids(DEFAULT_MASK_CLASSES)
    assert ids == (3, 4, 5, 6)
    assert set(SEGMENTATION) - set(ids) == {0, 1, 2}


def test_class_ids_keep_the_given_order_once_each() -> None:
    assert class_ids(["arms", "hair", "arms"]) == (6, 1)


@pytest.mark.parametrize(
    ("names", "problem"),
    [(["upper clothes", "shoes"], r"unknown class\(es\) \['shoes'\]"), ([], "no class")],
)
def test_bad_class_names_name_the_param_and_the_valid_names(names: list[str], problem: str) -> None:
    with pytest.raises(
        PipelineError, match=rf"params.yaml: redress.mask_classes: {problem}"
    ) as err:
        class_ids(names)
    assert all(name in str(err.value) for name in SEGMENTATION.values())


def test_garment_mask_is_the_union_of_the_classes() -> None:
    seg = np.stack([SEGMENTATION_8X8, np.zeros_like(SEGMENTATION_8X8)])
    mask = garment_mask(seg, class_ids(DEFAULT_MASK_CLASSES), 0)
    assert mask.dtype == bool and mask.shape == (2, 8, 8)
    np.testing.assert_array_equal(mask[0], UNION)
    assert not mask[1].any()
    np.testing.assert_array_equal(garment_mask(seg, [1, 2], 0)[0], np.isin(seg[0], [1, 2]))


def test_dilation_by_one_grows_a_3x3_window_clipped_at_the_border() -> None:
    seg = np.stack([SEGMENTATION_8X8, np.zeros_like(SEGMENTATION_8X8)])
    mask = garment_mask(seg, class_ids(DEFAULT_MASK_CLASSES), 1)
    np.testing.assert_array_equal(mask[0], DILATED_1)
    assert not mask[1].any()  # images are dilated one by one


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_dilation_equals_a_max_pool(dilation: int) -> None:
    seg = np.random.default_rng(dilation).integers(0, 7, (3, 12, 10), dtype=np.uint8)
    seg[seg > 2] = 0  # class 2 on about 1 pixel in 7: sparse, so the dilation shows
    mask = garment_mask(seg, [2], dilation)
    k = 2 * dilation + 1
    pooled = F.max_pool2d(torch.from_numpy(seg == 2).float()[:, None], k, 1, dilation)[:, 0]
    np.testing.assert_array_equal(mask, pooled.numpy() > 0)


def test_masks_of_many_images_are_built_in_chunks_without_a_wide_copy() -> None:
    """The real ~68,000 training images' masks must fit a Colab VM: the classes test runs a
    chunk at a time (np.isin on the whole array would hold 8 bytes a pixel), and chunk
    seams change nothing."""
    import tracemalloc

    rng = np.random.default_rng(0)
    seg = rng.integers(0, 8, size=(8192, 32, 32), dtype=np.uint8)  # 8 MiB
    tracemalloc.start()
    masks = garment_mask(seg, [2, 5], 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * seg.nbytes  # the bool result (1x) and one chunk's temporaries
    whole = garment_mask(seg, [2, 5], 2, chunk=len(seg))
    np.testing.assert_array_equal(masks, whole)
    np.testing.assert_array_equal(garment_mask(seg[:7], [2, 5], 2, chunk=3), whole[:7])


def test_negative_dilation_is_an_error() -> None:
    with pytest.raises(ValueError, match="dilation -1"):
        garment_mask(SEGMENTATION_8X8[None], [3], -1)


def test_composite_keeps_every_pixel_outside_the_mask_byte_identical() -> None:
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    mask = np.stack([UNION, DILATED_1])
    out = composite(source, generated, mask)
    assert out.dtype == np.uint8 and out.shape == source.shape
    assert out[~mask].tobytes() == source[~mask].tobytes()
    assert out[mask].tobytes() == generated[mask].tobytes()


def test_composite_rejects_mismatched_shapes_and_float_images() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="disagree"):
        composite(image, image, np.zeros((8, 7), bool))
    with pytest.raises(ValueError, match="uint8"):
        composite(image, image.astype(np.float32), np.zeros((8, 8), bool))


def test_random_masks_are_whole_rectangles_or_ellipses_inside_the_image() -> None:
    size = 16
    masks = random_masks(np.random.default_rng(0), 300, size)
    assert masks.dtype == bool and masks.shape == (300, size, size)
    rectangles = ellipses = 0
    for mask in masks:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert len(rows) and len(cols)  # never empty
        box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # A shape cut by the image's edge would not be symmetric about its box's centre.
        np.testing.assert_array_equal(box, box[::-1, ::-1])
        big = min(box.shape) >= 4
        rectangles += bool(big and box.all())
        ellipses += bool(big and not box.all())
    assert rectangles > 50 and ellipses > 50  # both kinds, about even
    assert 0.1 < masks.mean() < 0.45  # boxes of mean side (size + 1) / 2


def test_random_masks_are_reproducible_by_seed() -> None:
    a = random_masks(np.random.default_rng(7), 6, 16)
    b = random_masks(np.random.default_rng(7), 6, 16)
    c = random_masks(np.random.default_rng(8), 6, 16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
