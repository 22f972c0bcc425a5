"""Metrics of redress: does the redrawn garment show the target sentence's attributes?

Per judge and attribute (colour, sleeve, category; gender is not a target: 12% of the
official pairs change it, and redress keeps the wearer):
- over the pairs whose target differs from the source there: `target_acc` (the judge reads
  the target's value), `source_leak` (it still reads the source's: the failure mode), and
  their count `n`;
- over the pairs where the target keeps the source's value: `kept` and `n`.
A pair counts for an attribute when both its captions give a value the judge can read
(`zero_shot.judged`; for the pixel judge, a solid palette colour on both sides). Which pairs
count depends on the captions alone, so two models' verdicts on them align (`redress_hits`),
and each share comes with its n and Wilson interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fashion.metrics.garment_color import SOLID_CODES, garment_color
from fashion.metrics.intervals import joined, paired_difference, proportion
from fashion.metrics.judges import Judges
from fashion.metrics.zero_shot import judged

REDRESS_ATTRIBUTES = ("color", "sleeve", "category")


# judge -> attribute -> {"target_acc", "source_leak" (the changed pairs), "kept" (the
# unchanged pairs)}: one verdict per pair
RedressHits = dict[str, dict[str, dict[str, np.ndarray]]]


def transfer_hits(
    predicted: np.ndarray, source: np.ndarray, target: np.ndarray, counted: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-pair verdicts of one attribute for one judge (`counted`: the pairs this judge
    can score): on the pairs that change it, whether the judge reads the target's value
    (`target_acc`) or still the source's (`source_leak`); on those that keep it, `kept`."""
    changed = counted & (source != target)
    unchanged = counted & (source == target)
    return {
        "target_acc": (predicted == target)[changed],
        "source_leak": (predicted == source)[changed],
        "kept": (predicted == target)[unchanged],
    }


def transfer_blocks(hits: dict[str, np.ndarray]) -> dict[str, Any]:
    """The changed / unchanged blocks of `transfer_hits`: their `n` and each share with its
    interval (None where the block is empty)."""
    return {
        "changed": {"n": len(hits["target_acc"])}
        | proportion("target_acc", hits["target_acc"])
        | proportion("source_leak", hits["source_leak"]),
        "unchanged": {"n": len(hits["kept"])} | proportion("kept", hits["kept"]),
    }


def redress_hits(
    judges: Judges, images: np.ndarray, source: pd.DataFrame, target: pd.DataFrame
) -> RedressHits:
    """Per judge, per attribute: `transfer_hits` of uint8 images redressed from the `source`
    codes to the `target` codes (one row per image)."""
    out: RedressHits = {}
    embeds = judges.embed(images)
    for name, classifier in judges.classifiers.items():
        out[name] = {}
        for attribute in REDRESS_ATTRIBUTES:
            s, t = (_codes(codes, attribute) for codes in (source, target))
            counted = judged(attribute, s) & judged(attribute, t)
            predicted = classifier.predict(embeds[name], attribute)
            out[name][attribute] = transfer_hits(predicted, s, t, counted)
    if judges.pixel:
        s, t = _codes(source, "color"), _codes(target, "color")
        counted = np.isin(s, SOLID_CODES) & np.isin(t, SOLID_CODES)
        predicted = garment_color(images.astype(np.float32) / 255)
        out["pixel"] = {"color": transfer_hits(predicted, s, t, counted)}
    return out


def redress_blocks(hits: RedressHits) -> dict[str, dict]:
    """Per judge, per attribute: `transfer_blocks` of the verdicts."""
    return {
        judge: {attribute: transfer_blocks(h) for attribute, h in by_attribute.items()}
        for judge, by_attribute in hits.items()
    }


def redress_gains(base: RedressHits, finetuned: RedressHits, seed: int) -> dict[str, dict]:
    """Per judge, per attribute: fine-tuned - base target accuracy (and source leak) on the
    same changing pairs, with paired bootstrap intervals."""
    return {
        judge: {
            attribute: joined(
                paired_difference(share, h[share], finetuned[judge][attribute][share], seed)
                for share in ("target_acc", "source_leak")
            )
            for attribute, h in by_attribute.items()
        }
        for judge, by_attribute in base.items()
    }


def outside_mask_difference(redressed: np.ndarray, sources: np.ndarray, masks: np.ndarray) -> int:
    """The largest absolute pixel difference outside the masks (a composite gives 0)."""
    outside = ~masks.astype(bool)
    diff = np.abs(redressed.astype(np.int16) - sources.astype(np.int16))
    return int(diff[outside].max()) if outside.any() else 0


def _codes(table: pd.DataFrame, attribute: str) -> np.ndarray:
    return pd.to_numeric(table[attribute], errors="coerce").to_numpy(dtype=float)
