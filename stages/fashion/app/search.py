"""The Search tab: a sentence gives the test images CLIP ranks first (fine-tuned and base);
an image gives its nearest test captions and CLIP's zero-shot attributes.

The test images' embeddings are computed once per model and kept in `.cache/app/` (outside
DVC's outputs), in a file named by the hash of the model's files and of the test subset, so
a re-trained model or a new subset gets new embeddings and a restart reads them back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import CLIPModel, CLIPProcessor

from fashion.app.outputs import AppError, Outputs, as_app_errors, device
from fashion.clip.models import embed_images, embed_texts, load_base_clip, load_clip
from fashion.data.attributes import ATTRIBUTES, LABEL_MAPS
from fashion.data.subset import read_images, read_table, subset_path
from fashion.metrics.zero_shot import ZeroShotClassifier
from fashion.sd.sampling import files_fingerprint

MODELS = ("finetuned", "base")
CACHE = Path(".cache/app")  # under the project's root


@dataclass
class Hit:
    rank: int  # 1: the best match
    row: int  # of the test subset
    caption: str
    score: float  # cosine similarity


class TestSet:
    """The test split's images and captions (the prepared subset), and per model their
    embeddings (cached on disk) and the zero-shot classifier."""

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs
        self.path = subset_path(outputs.path("subset"), "test")
        table = read_table(self.path)
        self.captions: list[str] = table["caption"].tolist()
        self.images = read_images(self.path)
        self.distinct = sorted(set(self.captions))

    def __len__(self) -> int:
        return len(self.captions)

    def clip(self, model: str) -> tuple[CLIPModel, CLIPProcessor]:
        def load() -> tuple[CLIPModel, CLIPProcessor]:
            if model == "base":
                clip, processor = load_base_clip(self.outputs.path("base_clip"))
            else:
                clip, processor = load_clip(self.outputs.path("clip"))
            return clip.eval().to(device()), processor

        return self.outputs.load(f"clip/{model}", load)

    def embeddings(self, model: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, distinct captions) L2-normalised embeddings of `model`, from the cache
        when it holds them for these files."""

        def load() -> tuple[torch.Tensor, torch.Tensor]:
            folder = self.outputs.path("clip" if model == "finetuned" else "base_clip")
            cache = (
                self.outputs.root
                / CACHE
                / f"{model}-{files_fingerprint(folder, self.path)[:16]}.pt"
            )
            if cache.is_file():
                saved = torch.load(cache)
                return saved["images"], saved["captions"]
            clip, processor = self.clip(model)
            with torch.no_grad():
                images = embed_images(clip, processor, self.images, device=device())
                captions = embed_texts(clip, processor, self.distinct, device=device())
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"images": images, "captions": captions}, tmp)
            tmp.replace(cache)  # a stopped start leaves no half file
            return images, captions

        return self.outputs.load(f"embeddings/{model}", load)

    def zero_shot(self, model: str) -> ZeroShotClassifier:
        return self.outputs.load(
            f"zero_shot/{model}", lambda: ZeroShotClassifier(*self.clip(model), device=device())
        )


def test_set(outputs: Outputs) -> TestSet:
    """The project's test set, read once."""
    return outputs.load("tests", lambda: TestSet(outputs))


def warm_up(outputs: Outputs) -> None:
    """Read the test split and both models' embeddings (cached after the first start), so
    the first search answers at once."""
    tests = test_set(outputs)
    for model in MODELS:
        tests.embeddings(model)


def search(tests: TestSet, query: str | None, k: int) -> dict[str, list[Hit]]:
    """The `k` test images each model ranks first for `query`."""
    text = (query or "").strip()
    if not text:
        raise AppError("type a sentence to search for")
    if not 1 <= k <= len(tests):
        raise AppError(f"ask for 1 to {len(tests)} results, not {k}")
    hits = {}
    with as_app_errors():
        for model in MODELS:
            images, _ = tests.embeddings(model)
            query_embedding = embed_texts(*tests.clip(model), [text], device=device())[0]
            scores, rows = (images @ query_embedding).topk(k)
            hits[model] = [
                Hit(rank + 1, int(row), tests.captions[int(row)], float(score))
                for rank, (score, row) in enumerate(zip(scores, rows, strict=True))
            ]
    return hits


def read_upload(path: str | Path | None) -> np.ndarray:
    """uint8 RGB pixels of an uploaded file, or an `AppError` when it is not an image."""
    if not path:
        raise AppError("upload an image, or pick a test image by its index")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise AppError(f"{Path(path).name} is not an image (PNG, JPEG, ...)") from err


@dataclass
class Description:
    captions: list[Hit]  # nearest test captions; `row` is -1 (a caption is not one image)
    attributes: dict[str, tuple[str, float]]  # attribute -> (most probable value, probability)


def describe(tests: TestSet, image: np.ndarray, k: int, model: str = "finetuned") -> Description:
    """The `k` test captions nearest to `image` and its zero-shot attributes, by `model`."""
    if not 1 <= k <= len(tests.distinct):
        raise AppError(f"ask for 1 to {len(tests.distinct)} captions, not {k}")
    with as_app_errors():
        _, captions = tests.embeddings(model)
        embedding = embed_images(*tests.clip(model), image[None], device=device())
        scores, rows = (captions @ embedding[0]).topk(k)
        nearest = [
            Hit(rank + 1, -1, tests.distinct[int(row)], float(score))
            for rank, (score, row) in enumerate(zip(scores, rows, strict=True))
        ]
        classifier = tests.zero_shot(model)
        attributes = {}
        for attribute in ATTRIBUTES:
            probabilities = classifier.probabilities(embedding, attribute)[0]
            best = int(probabilities.argmax())
            code = int(classifier.classes[attribute][best])
            attributes[attribute] = (LABEL_MAPS[attribute][code], float(probabilities[best]))
    return Description(nearest, attributes)
