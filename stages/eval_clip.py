"""Retrieval and zero-shot attribute metrics of the base and fine-tuned CLIP on the test split.

Writes `metrics/clip.json` ({"n", "base", "finetuned"}) and `plots/clip/similarity.csv`
(matched vs unmatched cosine-similarity densities of both models). Ranks break ties by
gallery index (see `fashion.metrics.retrieval`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import CLIPModel, CLIPProcessor

from fashion.clip.data import Pairs, read_pairs
from fashion.clip.models import embed_images, embed_texts, load_base_clip, load_clip
from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.subset import read_table, sample_rows, subset_path
from fashion.metrics.reference import compute_device
from fashion.metrics.retrieval import chunked_ranks, recall_summary, similarity_histograms
from fashion.metrics.zero_shot import ZeroShotClassifier, accuracy, balanced_accuracy


def evaluate(
    model: CLIPModel, processor: CLIPProcessor, pairs: Pairs, p: dict[str, Any], device: str
) -> tuple[dict[str, Any], tuple]:
    """(metrics M of one model, similarity histograms) on the sampled test pairs."""
    model.eval().to(device)
    batch, chunk = int(p["batch_size"]), int(p["chunk"])
    images = embed_images(model, processor, pairs.images, batch, device)
    texts = embed_texts(model, processor, pairs.captions, batch, device)
    caption = torch.from_numpy(pairs.caption_ids)
    index = torch.arange(len(pairs))
    metrics: dict[str, Any] = {
        "i2t": recall_summary(chunked_ranks(images, texts, caption, caption, chunk)),
        "t2i": recall_summary(chunked_ranks(texts, images, caption, caption, chunk)),
        "i2t_exact": recall_summary(chunked_ranks(images, texts, index, index, chunk)),
        "t2i_exact": recall_summary(chunked_ranks(texts, images, index, index, chunk)),
    }
    classifier = ZeroShotClassifier(model, processor, device=device)
    predicted = {a: classifier.predict(images, a) for a in ATTRIBUTES}
    metrics["attr_acc"] = {a: accuracy(pairs.codes[a], predicted[a]) for a in ATTRIBUTES}
    metrics["attr_balanced_acc"] = {
        a: balanced_accuracy(pairs.codes[a], predicted[a]) for a in ATTRIBUTES
    }
    hist = similarity_histograms(images, texts, caption, int(p["histogram_bins"]), chunk)
    return metrics, hist


def main(
    subset: Path = Path("data/subset"),
    base_clip: Path = Path("models/base_clip"),
    clip: Path = Path("models/clip"),
    metrics_file: Path = Path("metrics/clip.json"),
    plots: Path = Path("plots/clip"),
) -> None:
    p = section(load_params(), "eval_clip")
    device = compute_device()
    test = subset_path(subset, "test")
    rows = sample_rows(len(read_table(test)), p["n"], int(p["seed"]))
    pairs = read_pairs(test, rows)
    print(f"eval_clip: {len(pairs)} test pairs, {len(set(pairs.captions))} distinct captions")

    results, columns = {"n": len(pairs)}, {}
    models = {"base": load_base_clip(base_clip), "finetuned": load_clip(clip)}
    for name, (model, processor) in models.items():
        results[name], (edges, matched, unmatched) = evaluate(model, processor, pairs, p, device)
        columns["similarity"] = (edges[:-1] + edges[1:]) / 2
        columns[f"{name}_matched"], columns[f"{name}_unmatched"] = matched, unmatched
        print(f"{name}: {json.dumps(results[name]['i2t'])}")

    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    with atomic_path(plots, is_dir=True) as tmp:
        pd.DataFrame(columns).to_csv(tmp / "similarity.csv", index=False, float_format="%.6g")


if __name__ == "__main__":
    run_stage(main)
