"""Segmentation maps for redress v2: FashionGAN's coarse body map (the shape stage's input),
maps at the inpainting UNet's latent size (its extra channels), the v2 mask, IoU, and the
rules that read a sleeve length and a garment length off a map.

The coarse map ("spatial constraint", FashionGAN, ICCV 2017) keeps where the person is and
not what they wear: background, hair and face stay, and upper clothes, lower clothes, legs
and arms merge into one body class; the map is then cut into `size` x `size` cells, each
the class most of its pixels hold (`coarse_maps`). A garment's edges and a sleeve's end
are lost, so the shape stage must draw them from the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fashion.data.attributes import SEGMENTATION, SEGMENTATION_COLORS

N_CLASSES = len(SEGMENTATION)  # 7: the classes of the benchmark's `b_`
BACKGROUND, HAIR, FACE, UPPER, LOWER, LEGS, ARMS = range(N_CLASSES)
# The coarse classes: background, hair, face and body (everything the garments change).
COARSE_CLASSES = ("background", "hair", "face", "body")
BODY = UPPER  # the coarse class of upper clothes, lower clothes, legs and arms (ids 3..6)
PERSON = (HAIR, FACE, UPPER, LOWER, LEGS, ARMS)
KEPT = (HAIR, FACE)  # what redress never redraws: the wearer's identity


def coarse_maps(segmentation: np.ndarray, size: int, cells: str = "majority") -> np.ndarray:
    """float32 (N, 4, size, size): the coarse body map of each (N, H, W) segmentation. Each
    cell one-hot, the class most of its pixels hold (`majority`; ties: the lower class), or
    the share of its pixels in each class (`shares`).

    Shares say where inside a cell the body ends, which is the garment's outline (a dress's
    flare): a model given them copies the source's garment instead of the sentence's."""
    segmentation = np.asarray(segmentation)
    side = segmentation.shape[-1]
    if segmentation.ndim != 3 or segmentation.shape[1] != side:
        raise ValueError(f"segmentation is {segmentation.shape}, expected square (N, H, W) maps")
    if side % size:
        raise ValueError(f"coarse map size {size} does not divide the maps' {side} px")
    cell = side // size
    merged = np.minimum(segmentation, BODY).astype(np.uint8)  # 3..6 -> body
    # each cell's pixels made contiguous (N, size, size, cell^2): the counts are then sums
    # over the last axis, not over two strided ones (3x faster)
    pixels = merged.reshape(len(merged), size, cell, size, cell).transpose(0, 1, 3, 2, 4)
    pixels = np.ascontiguousarray(pixels).reshape(len(merged), size, size, cell * cell)
    counts = np.stack(
        [(pixels == k).sum(axis=-1, dtype=np.int32) for k in range(len(COARSE_CLASSES))], axis=1
    )
    if cells == "shares":
        return counts.astype(np.float32) / cell**2
    if cells != "majority":
        raise ValueError(f"coarse map cells {cells!r}: majority or shares")
    winner = counts.argmax(axis=1)[:, None]
    return (np.arange(len(COARSE_CLASSES))[None, :, None, None] == winner).astype(np.float32)


def latent_maps(maps: np.ndarray, size: int) -> torch.Tensor:
    """float (N, 7, size, size): integer (N, H, W) maps at the latents' size, each cell the
    share of its pixels in each class (the one-hot map, area-downsampled)."""
    maps = torch.as_tensor(np.asarray(maps), dtype=torch.int64)
    one_hot = F.one_hot(maps, N_CLASSES).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(one_hot, size)


def redress_mask_v2(source_mask: np.ndarray, source_map: np.ndarray, target_mask: np.ndarray):
    """bool (N, H, W): the source's v1 mask (its garments, dilated) joined with the same of
    the target map (`target_mask`), less the source's hair and face.

    A longer dress or bare arms need room the source's garment did not take; the wearer's
    hair and face stay the source's pixels whatever the maps say.
    """
    kept = np.isin(np.asarray(source_map), np.asarray(KEPT))
    return (np.asarray(source_mask, bool) | np.asarray(target_mask, bool)) & ~kept


def iou_counts(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 (N, 7) intersections and unions of each class, map by map."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"maps of {predicted.shape} and {truth.shape}")
    inter = np.empty((len(truth), N_CLASSES), np.int64)
    union = np.empty_like(inter)
    for c in range(N_CLASSES):
        p, t = predicted == c, truth == c
        inter[:, c] = (p & t).sum(axis=(1, 2))
        union[:, c] = (p | t).sum(axis=(1, 2))
    return inter, union


def class_iou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Dataset-level IoU of each class (summed intersections / summed unions; NaN where a
    class appears in neither map set)."""
    total = union.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inter.sum(axis=0) / total, np.nan)


# --- what a map says about the garment -----------------------------------------------------


def sleeve_feature(maps: np.ndarray) -> np.ndarray:
    """Bare arm per map: arm pixels / (arm + upper-clothes pixels); a long sleeve covers the
    arm (near 0), a sleeveless top leaves it bare (high). NaN on a map with neither."""
    maps = np.asarray(maps)
    arms = (maps == ARMS).sum(axis=(1, 2)).astype(np.float64)
    upper = (maps == UPPER).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(arms + upper > 0, arms / (arms + upper), np.nan)


def length_feature(maps: np.ndarray) -> np.ndarray:
    """Where the upper garment ends, as a share of the person's height: (its lowest row in
    the middle third of the person's columns - the person's top row) / (the person's bottom
    row - top row + 1). The middle third is the torso: a long sleeve hanging beside it does
    not make a tee long. A dress or a coat ends low, a tee at the hip. Where the torso has
    no upper clothes, the lower clothes' end: the benchmark's `b_` labels a dress as lower
    clothes (the ATR parser's dress; docs/redress.md). NaN on a map without a person or
    without garments on the torso."""
    maps = np.asarray(maps)
    rows, cols = np.arange(maps.shape[1]), np.arange(maps.shape[2])
    out = np.full(len(maps), np.nan)
    for i, m in enumerate(maps):
        person = np.isin(m, PERSON)
        in_rows, in_cols = rows[person.any(axis=1)], cols[person.any(axis=0)]
        if not len(in_rows):
            continue
        left, right = in_cols[0], in_cols[-1]
        third = (right - left + 1) / 3
        torso = (cols >= left + third) & (cols <= right - third)
        garment = (m[:, torso] == UPPER).any(axis=1)
        if not garment.any():
            garment = (m[:, torso] == LOWER).any(axis=1)
        if garment.any():
            top, bottom = in_rows[0], in_rows[-1]
            out[i] = (rows[garment][-1] - top) / (bottom - top + 1)
    return out


MAP_FEATURES = {"sleeve": sleeve_feature, "category": length_feature}
RULES = "rules.json"  # the fitted MapRules, beside the shape model


@dataclass
class MapRule:
    """Reads one attribute off a map: the median feature of each of its values on training
    maps; a map shows the target's value when its feature lies nearer the target value's
    median than the source value's. Pairs whose two medians differ by less than `margin`
    are not judged (the feature cannot tell them apart)."""

    attribute: str
    medians: dict[int, float]
    margin: float

    @classmethod
    def fit(cls, attribute: str, maps: np.ndarray, codes: np.ndarray, margin: float) -> MapRule:
        feature = MAP_FEATURES[attribute](maps)
        codes = np.asarray(codes, dtype=float)
        known = ~np.isnan(feature) & ~np.isnan(codes)
        medians = {
            int(c): float(np.median(feature[known & (codes == c)])) for c in np.unique(codes[known])
        }
        return cls(attribute, medians, margin)

    def judged(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """bool per pair: both values have a median, and they lie `margin` or more apart."""
        s, t = self._medians(source), self._medians(target)
        with np.errstate(invalid="ignore"):
            return ~np.isnan(s) & ~np.isnan(t) & (np.abs(s - t) >= self.margin)

    def hits(self, maps: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """bool per judged pair: the map's feature is nearer the target's median."""
        feature = MAP_FEATURES[self.attribute](maps)
        s, t = self._medians(source), self._medians(target)
        with np.errstate(invalid="ignore"):
            nearer = np.abs(feature - t) < np.abs(feature - s)
        return nearer[self.judged(source, target)]

    def _medians(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=float)
        return np.array(
            [self.medians.get(int(c), np.nan) if not np.isnan(c) else np.nan for c in codes]
        )

    def to_json(self) -> dict:
        return {"medians": {str(k): v for k, v in self.medians.items()}, "margin": self.margin}

    @classmethod
    def from_json(cls, attribute: str, data: dict) -> MapRule:
        return cls(
            attribute, {int(k): float(v) for k, v in data["medians"].items()}, data["margin"]
        )


def colored_maps(maps: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3): integer maps in the segmentation's display colours."""
    palette = np.array(
        [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in SEGMENTATION_COLORS], np.uint8
    )
    return palette[np.asarray(maps, dtype=np.int64)]


def colored_coarse(coarse: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, side, side, 3): coarse maps (N, 4, c, c) as their most common class per cell
    (the body in the upper clothes' colour), enlarged to `side` px."""
    classes = np.array([BACKGROUND, HAIR, FACE, UPPER])[np.asarray(coarse).argmax(axis=1)]
    repeat = side // classes.shape[-1]
    return colored_maps(classes.repeat(repeat, axis=1).repeat(repeat, axis=2))
