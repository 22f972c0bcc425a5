"""The attribute judges of generated images, and the prompt grid's seen/unseen accuracy.

Judges: zero-shot CLIPs (the fine-tuned one shares the generator's training pairs, the base
one does not) and, on the demo, the pixel colour judge (`garment_color`). Every judge uses
one rule for which images an attribute is judged on (`zero_shot.judged`). Under several
processes each embeds its share of whole batches of images, and every process gets them all
(`Judges.embed`: call it on every process, in the same order). Every accuracy and CLIP score
comes with its n and 95% interval (`fashion.metrics.intervals`), and `attribute_hits` gives
the per-image verdicts that paired differences between models are computed from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fashion.clip.models import embed_images, embed_texts
from fashion.core.processes import Processes
from fashion.data.attributes import ATTRIBUTES
from fashion.metrics.garment_color import color_hits
from fashion.metrics.image import clip_score, resize_images
from fashion.metrics.intervals import bootstrap_mean, joined, paired_difference, proportion
from fashion.metrics.zero_shot import ZeroShotClassifier, judged_predictions

# judge -> attribute -> one verdict (hit or miss) per judged image
Hits = dict[str, dict[str, np.ndarray]]


class Judges:
    """The attribute judges: zero-shot CLIPs (their image embeddings also give CLIP scores)
    and, where `pixel`, the demo's pixel colour judge. `seed`: the bootstrap intervals'."""

    def __init__(
        self,
        clips: dict[str, tuple],
        pixel: bool,
        batch: int,
        device: torch.device | str,
        processes: Processes | None = None,
        seed: int = 0,
    ) -> None:
        self.clips, self.pixel, self.batch, self.device = clips, pixel, batch, device
        self.seed = seed
        self.processes = processes or Processes()
        self.classifiers = {
            name: ZeroShotClassifier(model.to(device), processor, device=device)
            for name, (model, processor) in clips.items()
        }

    def embed(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        """Each CLIP's image embeddings, batch by batch over the processes (a collective)."""
        out = {}
        for name, (model, processor) in self.clips.items():

            def batch(part: slice, model=model, processor=processor) -> torch.Tensor:
                return embed_images(model, processor, images[part], self.batch, self.device)

            out[name] = torch.cat(self.processes.map_batches(batch, len(images), self.batch))
        return out

    def clip_scores(self, embeds: dict[str, torch.Tensor], prompts: list[str]) -> dict[str, Any]:
        """Per CLIP, the CLIP score of the images with their prompts (torchmetrics' definition,
        `clip_score`), its n and a bootstrap interval over the images."""
        out: dict[str, Any] = {}
        for name, (model, processor) in self.clips.items():
            texts = embed_texts(model, processor, prompts, self.batch, self.device)
            per_image = (100 * (embeds[name] * texts).sum(dim=-1)).double().cpu().numpy()
            low, high = bootstrap_mean(per_image, self.seed)
            out |= {
                name: clip_score(embeds[name], texts),
                f"{name}_n": len(per_image),
                f"{name}_ci95_low": max(low, 0.0),
                f"{name}_ci95_high": max(high, 0.0),
            }
        return out

    def attribute_hits(
        self, images: np.ndarray, embeds: dict[str, torch.Tensor], codes: pd.DataFrame
    ) -> Hits:
        """Per judge and attribute, a verdict for each image the judge reads that attribute
        on (`zero_shot.judged`; the pixel judge: solid palette colours). Which images those
        are depends on `codes` alone, so two models' images of the same codes align."""
        out: Hits = {
            name: {
                attribute: truth == predicted
                for attribute, (truth, predicted) in judged_predictions(
                    classifier, embeds[name], codes
                ).items()
            }
            for name, classifier in self.classifiers.items()
        }
        if self.pixel:
            colors = pd.to_numeric(codes["color"], errors="coerce").to_numpy(dtype=float)
            out["pixel"] = {"color": color_hits(images, colors)}
        return out

    def accuracy(
        self, images: np.ndarray, embeds: dict[str, torch.Tensor], codes: pd.DataFrame
    ) -> dict[str, dict]:
        """Per judge, each attribute's accuracy with its n and Wilson interval."""
        return accuracy_blocks(self.attribute_hits(images, embeds, codes))


def accuracy_blocks(hits: Hits) -> dict[str, dict]:
    """Per judge, `proportion` of each attribute's hits (None where none was judged)."""
    return {
        judge: joined(proportion(a, h) for a, h in by_attribute.items())
        for judge, by_attribute in hits.items()
    }


def paired_gains(base: Hits, finetuned: Hits, seed: int) -> dict[str, dict]:
    """Per judge and attribute, fine-tuned - base accuracy on the same images, with a paired
    bootstrap interval (`intervals.paired_difference`)."""
    return {
        judge: joined(
            paired_difference(a, h, finetuned[judge][a], seed) for a, h in by_attribute.items()
        )
        for judge, by_attribute in base.items()
    }


def grid_metrics(
    judges: Judges,
    generated: dict[str, tuple[pd.DataFrame, np.ndarray]],
    size: int,
    training: pd.DataFrame,
    seen_min_count: int,
) -> dict[str, Any]:
    """Attribute accuracy of the prompt grid's images, for combinations seen in training
    (at least `seen_min_count` images) and unseen ones (none)."""
    combos = training[list(ATTRIBUTES)].value_counts()
    out: dict[str, Any] = {"seen_min_count": seen_min_count}
    for model, (table, images) in generated.items():
        grid = table.index[table["source"] == "in_domain"].to_numpy()
        keys = table.loc[grid, list(ATTRIBUTES)].astype(int).itertuples(index=False, name=None)
        counts = np.array([int(combos.get(k, 0)) for k in keys], dtype=np.int64)
        out[model] = {}
        for name, rows in (("seen", grid[counts >= seen_min_count]), ("unseen", grid[counts == 0])):
            block: dict[str, Any] = {"n": len(rows)}
            if len(rows):
                shown = resize_images(images[rows], size)
                codes = table.loc[rows, list(ATTRIBUTES)].reset_index(drop=True)
                block["attr_acc"] = judges.accuracy(shown, judges.embed(shown), codes)
            out[model][name] = block
    return out
