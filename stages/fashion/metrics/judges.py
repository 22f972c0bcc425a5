"""The attribute judges of generated images, and the prompt grid's seen/unseen accuracy.

Judges: zero-shot CLIPs (the fine-tuned one shares the generator's training pairs, the base
one does not) and, on the demo, the pixel colour judge (`garment_color`). Every judge uses
one rule for which images an attribute is judged on (`zero_shot.judged`). Under several
processes each embeds its share of whole batches of images, and every process gets them all
(`Judges.embed`: call it on every process, in the same order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fashion.clip.models import embed_images, embed_texts
from fashion.core.processes import Processes
from fashion.data.attributes import ATTRIBUTES
from fashion.metrics.garment_color import color_accuracy
from fashion.metrics.image import clip_score, resize_images
from fashion.metrics.zero_shot import ZeroShotClassifier, attribute_accuracy


class Judges:
    """The attribute judges: zero-shot CLIPs (their image embeddings also give CLIP scores)
    and, where `pixel`, the demo's pixel colour judge."""

    def __init__(
        self,
        clips: dict[str, tuple],
        pixel: bool,
        batch: int,
        device: torch.device | str,
        processes: Processes | None = None,
    ) -> None:
        self.clips, self.pixel, self.batch, self.device = clips, pixel, batch, device
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

    def clip_scores(self, embeds: dict[str, torch.Tensor], prompts: list[str]) -> dict[str, float]:
        out = {}
        for name, (model, processor) in self.clips.items():
            texts = embed_texts(model, processor, prompts, self.batch, self.device)
            out[name] = clip_score(embeds[name], texts)
        return out

    def accuracy(
        self, images: np.ndarray, embeds: dict[str, torch.Tensor], codes: pd.DataFrame
    ) -> dict[str, dict]:
        out: dict[str, dict] = {
            name: attribute_accuracy(classifier, embeds[name], codes)
            for name, classifier in self.classifiers.items()
        }
        if self.pixel:
            colors = pd.to_numeric(codes["color"], errors="coerce").to_numpy(dtype=float)
            out["pixel"] = {"color": color_accuracy(images, colors)}
        return out


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
