"""The masks of inpainting: the garment region to redraw (from the segmentation), the random
masks of inpainting training, and the composite that keeps everything outside the mask.

Masks are bool, True where the image is redrawn, as `StableDiffusionInpaintPipeline` reads
them (white = repaint).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.data.attributes import SEGMENTATION

MASK_CLASSES_PARAM = "redress.mask_classes"
# Everything but background, hair and face: the wearer's identity and the scene stay, the
# garments and the skin they may cover or uncover (a long sleeve over an arm) are redrawn.
DEFAULT_MASK_CLASSES: tuple[str, ...] = ("upper clothes", "lower clothes", "legs", "arms")


def class_ids(names: Iterable[str]) -> tuple[int, ...]:
    """Segmentation class ids of `names` (as in `SEGMENTATION`), in the given order, once each.

    The names come from params.yaml, so a typo is named there with the valid names.
    """
    names = list(names)
    ids = {name: i for i, name in SEGMENTATION.items()}
    unknown = [name for name in names if name not in ids]
    if unknown or not names:
        problem = f"unknown class(es) {unknown}" if unknown else "no class given"
        raise PipelineError(
            f"{PARAMS_FILE}: {MASK_CLASSES_PARAM}: {problem}; "
            f"valid segmentation classes: {list(ids)}"
        )
    return tuple(dict.fromkeys(ids[name] for name in names))


def redress_masks(segmentation: np.ndarray, redress: dict) -> np.ndarray:
    """The garment masks the `redress` params define: `mask_classes`, dilated by
    `mask_dilation` pixels."""
    return garment_mask(
        segmentation, class_ids(redress["mask_classes"]), int(redress["mask_dilation"])
    )


def garment_mask(
    segmentation: np.ndarray, classes: Iterable[int], dilation: int, chunk: int = 256
) -> np.ndarray:
    """bool (N, H, W): pixels of `classes` in uint8 (N, H, W) `segmentation`, dilated by
    `dilation` pixels (a square (2d + 1) window; 0: the plain union).

    Dilation covers the seam the parser's boundary leaves (a garment's edge pixels labelled
    background or skin), so no sliver of the old garment stays around the new one.
    Computed `chunk` images at a time: `np.isin` widens the classes to int64, 8 bytes a
    pixel, which for the real ~68,000 training images would be 9 GB at once.
    """
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 3:
        raise ValueError(f"segmentation is {segmentation.shape}, expected (N, H, W)")
    if dilation < 0 or dilation != int(dilation):
        raise ValueError(f"mask dilation {dilation}: must be a whole number of pixels >= 0")
    wanted, d = np.fromiter(classes, dtype=np.int64), int(dilation)
    masks = np.empty(segmentation.shape, dtype=bool)
    for start in range(0, len(segmentation), chunk):
        part = np.isin(segmentation[start : start + chunk], wanted)
        masks[start : start + chunk] = _dilate(_dilate(part, d, axis=1), d, axis=2)
    return masks


def _dilate(mask: np.ndarray, d: int, axis: int) -> np.ndarray:
    """Max over a (2d + 1) window along one axis (two passes make the square window)."""
    if d == 0:
        return mask
    widths = [(0, 0)] * mask.ndim
    widths[axis] = (d, d)
    padded = np.pad(mask, widths)  # False outside the image: the border does not grow masks
    n = mask.shape[axis]
    out = np.zeros_like(mask)
    for offset in range(2 * d + 1):
        out |= np.take(padded, np.arange(offset, offset + n), axis=axis)
    return out


def random_masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """bool (n, size, size): one rectangle or ellipse each (even odds), of random height and
    width in 1..size, at a random place inside the image.

    The masks of diffusers' inpainting training recipes: a model trained only on garment
    masks learns their shape; random shapes teach it to fill any hole from its border.
    """
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        h, w = rng.integers(1, size + 1, 2)
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        if rng.random() < 0.5:
            masks[i, top : top + h, left : left + w] = True
        else:  # the ellipse inscribed in the same box (never empty: the pixel centre nearest
            # the box's centre is within half a pixel of it on each axis, inside for h, w >= 1)
            cy, cx = top + h / 2, left + w / 2
            masks[i] = ((y - cy) / (h / 2)) ** 2 + ((x - cx) / (w / 2)) ** 2 <= 1
    return masks


def composite(source: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 images: `generated` inside the mask, `source` exactly everywhere else.

    The VAE's round trip changes every pixel a little; pasting the source back keeps the
    wearer, hair, face and background byte-identical, so only the garment is new.
    """
    source, generated, mask = np.asarray(source), np.asarray(generated), np.asarray(mask)
    if source.dtype != np.uint8 or generated.dtype != np.uint8:
        raise ValueError(f"composite wants uint8 images, got {source.dtype}, {generated.dtype}")
    if source.shape != generated.shape or mask.shape != source.shape[:-1]:
        raise ValueError(
            f"composite: source {source.shape}, generated {generated.shape} and mask "
            f"{mask.shape} disagree (expected (..., H, W, C) images and an (..., H, W) mask)"
        )
    return np.where(mask.astype(bool)[..., None], generated, source)
