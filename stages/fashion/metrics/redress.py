"""Metrics of redress: does the redrawn garment show the target sentence's attributes?

Per judge and attribute (colour, sleeve, category; gender is not a target: 12% of the
official pairs change it, and redress keeps the wearer):
- over the pairs whose target differs from the source there: `target_acc` (the judge reads
  the target's value), `source_leak` (it still reads the source's: the failure mode), and
  their count `n`;
- over the pairs where the target keeps the source's value: `kept` and `n`.
A pair counts for an attribute when both its captions give a value the judge can read
(`zero_shot.judged`; for the pixel judge, a solid palette colour on both sides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fashion.metrics.garment_color import SOLID_CODES, garment_color
from fashion.metrics.judges import Judges
from fashion.metrics.zero_shot import judged

REDRESS_ATTRIBUTES = ("color", "sleeve", "category")


def transfer(
    predicted: np.ndarray, source: np.ndarray, target: np.ndarray, counted: np.ndarray
) -> dict[str, Any]:
    """The changed / unchanged blocks of one attribute for one judge (`counted`: the pairs
    this judge can score)."""
    changed = counted & (source != target)
    unchanged = counted & (source == target)

    def share(hit: np.ndarray, rows: np.ndarray) -> float | None:
        return float(hit[rows].mean()) if rows.any() else None

    return {
        "changed": {
            "n": int(changed.sum()),
            "target_acc": share(predicted == target, changed),
            "source_leak": share(predicted == source, changed),
        },
        "unchanged": {"n": int(unchanged.sum()), "kept": share(predicted == target, unchanged)},
    }


def redress_accuracy(
    judges: Judges, images: np.ndarray, source: pd.DataFrame, target: pd.DataFrame
) -> dict[str, dict]:
    """Per judge, per attribute: `transfer` of uint8 images redressed from the `source`
    codes to the `target` codes (one row per image)."""
    out: dict[str, dict] = {}
    embeds = judges.embed(images)
    for name, classifier in judges.classifiers.items():
        out[name] = {}
        for attribute in REDRESS_ATTRIBUTES:
            s, t = (_codes(codes, attribute) for codes in (source, target))
            counted = judged(attribute, s) & judged(attribute, t)
            predicted = classifier.predict(embeds[name], attribute)
            out[name][attribute] = transfer(predicted, s, t, counted)
    if judges.pixel:
        s, t = _codes(source, "color"), _codes(target, "color")
        counted = np.isin(s, SOLID_CODES) & np.isin(t, SOLID_CODES)
        predicted = garment_color(images.astype(np.float32) / 255)
        out["pixel"] = {"color": transfer(predicted, s, t, counted)}
    return out


def outside_mask_difference(redressed: np.ndarray, sources: np.ndarray, masks: np.ndarray) -> int:
    """The largest absolute pixel difference outside the masks (a composite gives 0)."""
    outside = ~masks.astype(bool)
    diff = np.abs(redressed.astype(np.int16) - sources.astype(np.int16))
    return int(diff[outside].max()) if outside.any() else 0


def _codes(table: pd.DataFrame, attribute: str) -> np.ndarray:
    return pd.to_numeric(table[attribute], errors="coerce").to_numpy(dtype=float)
