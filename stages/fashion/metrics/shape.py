"""Metrics of the shape stage: how well predicted segmentation maps match the true ones, and
whether a map redressed to another sentence shows that sentence's sleeve and length.

- Own captions (each image's map predicted from its coarse map and its own caption, against
  its `b_`): IoU per class over the whole split (summed intersections / summed unions) and
  their mean (mIoU), with a 95% interval from a bootstrap over the images.
- Changing pairs (a source's coarse map with its target's sentence): per attribute, the
  share of judged pairs whose predicted map reads as the target by `MapRule` (the sleeve by
  the bare-arm share, the category by where the upper garment ends), beside the same rule
  on the target's own true map (the ceiling) and on the source's map (nothing changed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fashion.data.attributes import SEGMENTATION
from fashion.metrics.intervals import LEVEL, proportion
from fashion.shape.maps import MapRule, class_iou, iou_counts

RESAMPLES = 1000


def iou_block(predicted: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    """Per-class IoU, mIoU (the mean over classes) with its bootstrap interval, and n."""
    inter, union = iou_counts(predicted, truth)
    per_class = class_iou(inter, union)
    rng = np.random.default_rng([seed, 11])
    resampled = []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, len(truth), len(truth))
        resampled.append(np.nanmean(class_iou(inter[rows], union[rows])))
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail]) if len(truth) > 1 else (np.nan,) * 2
    return {
        "n": len(truth),
        "miou": float(np.nanmean(per_class)),
        "miou_ci95_low": float(low),
        "miou_ci95_high": float(high),
        "iou": {
            name: (None if np.isnan(v) else float(v))
            for name, v in zip(SEGMENTATION.values(), per_class, strict=True)
        },
    }


def rule_blocks(
    rules: dict[str, MapRule],
    maps: dict[str, np.ndarray],
    source_codes: dict[str, np.ndarray],
    target_codes: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Per attribute: the rule's verdicts on each set of `maps` (one map per pair, e.g.
    predicted, the target's own, the source's), each a share with its n and interval."""
    out: dict[str, Any] = {}
    for attribute, rule in rules.items():
        s, t = source_codes[attribute], target_codes[attribute]
        changed = np.asarray(s, float) != np.asarray(t, float)
        block: dict[str, Any] = {"pairs_changed": int(changed.sum())}
        for name, m in maps.items():
            hits = rule.hits(m[changed], s[changed], t[changed])
            block |= proportion(f"{name}_acc", hits)
        out[attribute] = block
    return out
