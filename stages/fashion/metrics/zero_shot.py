"""Zero-shot attribute classification (colour, sleeve, category, gender) with a CLIP model.

The candidate texts are every caption the benchmark's templates compose from the label maps
(each gender x colour x sleeve x category x template). An image's probabilities over those
captions (softmax of the model's scaled similarities) are summed per value of an attribute,
and the most probable value wins: the attribute is read off the whole description, so a
class is not judged by prompts for attribute combinations the model never saw.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from transformers import CLIPModel, CLIPProcessor

from fashion.clip.models import embed_images, embed_texts
from fashion.data.attributes import ATTRIBUTES, LABEL_MAPS
from fashion.data.captions import TEMPLATES, compose_caption


class ZeroShotClassifier:
    """Caption embeddings of the whole attribute grid for one model; `predict` gives raw codes."""

    def __init__(
        self,
        model: CLIPModel,
        processor: CLIPProcessor,
        templates: tuple[str, ...] = TEMPLATES,
        device: torch.device | str = "cpu",
    ) -> None:
        grid = list(itertools.product(*(LABEL_MAPS[a] for a in ATTRIBUTES), templates))
        self.text_embeds = embed_texts(model, processor, [compose_caption(*g) for g in grid],
                                       device=device)  # fmt: skip
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.classes: dict[str, np.ndarray] = {}
        self.values: dict[str, np.ndarray] = {}  # attribute -> its code in each caption
        self.membership: dict[str, torch.Tensor] = {}  # attribute -> (captions, classes) 0/1
        for i, attribute in enumerate(ATTRIBUTES):
            codes = np.array(sorted(LABEL_MAPS[attribute]))
            self.values[attribute] = np.array([g[i] for g in grid])
            self.classes[attribute] = codes
            self.membership[attribute] = torch.from_numpy(
                (self.values[attribute][:, None] == codes[None, :]).astype(np.float32)
            )

    def probabilities(self, image_embeds: torch.Tensor, attribute: str) -> torch.Tensor:
        """(n, classes) probabilities of the values of `attribute`, from normalised image embeds."""
        out = []
        for chunk in image_embeds.split(1024):
            p = (self.logit_scale * chunk @ self.text_embeds.T).softmax(dim=1)
            out.append(p @ self.membership[attribute])
        return torch.cat(out)

    def predict(self, image_embeds: torch.Tensor, attribute: str) -> np.ndarray:
        """Raw codes (n,) of the most probable value of `attribute`."""
        scores = self.probabilities(image_embeds, attribute)
        return self.classes[attribute][scores.argmax(dim=1).numpy()]


def zero_shot_predict(
    model: CLIPModel,
    processor: CLIPProcessor,
    images: np.ndarray,
    attribute: str,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Predicted raw codes of `attribute` for uint8 HWC images (n, h, w, 3)."""
    classifier = ZeroShotClassifier(model, processor, device=device)
    return classifier.predict(embed_images(model, processor, images, device=device), attribute)


UNSPECIFIED_SLEEVE = 4  # the caption names no sleeve: nothing to judge in the image


def judged(attribute: str, truth: np.ndarray) -> np.ndarray:
    """Which images an attribute is judged on: a known value (not NaN), and for the sleeve
    one the caption names (code 4, unspecified, is left out). One rule for every judge."""
    truth = np.asarray(truth, dtype=float)
    known = ~np.isnan(truth)
    if attribute == "sleeve":
        known &= truth != UNSPECIFIED_SLEEVE
    return known


def accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(true) == np.asarray(pred)))


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in `true` (skewed classes weigh equally)."""
    true, pred = np.asarray(true), np.asarray(pred)
    return float(np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)]))


def judged_predictions(
    classifier: ZeroShotClassifier, image_embeds: torch.Tensor, codes: pd.DataFrame
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per attribute, (true codes, predicted codes) of the images `judged` on it.

    `codes` holds one row per image and a column per attribute (NaN/NA where a prompt names
    no value of it)."""
    out = {}
    for attribute in ATTRIBUTES:
        truth = pd.to_numeric(codes[attribute], errors="coerce").to_numpy(dtype=float)
        rows = judged(attribute, truth)
        predicted = classifier.predict(image_embeds[torch.from_numpy(rows)], attribute)
        out[attribute] = (truth[rows], predicted)
    return out
