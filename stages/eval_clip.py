"""Retrieval and zero-shot attribute metrics of the base and fine-tuned CLIP.

Scores the split `split.evaluate` names (test for reported numbers, validation while choosing
defaults). Writes `metrics/clip.json` ({"split", "n", "n_distinct_captions", "base",
"finetuned", "environment"}) and `plots/clip/similarity.csv` (matched vs unmatched cosine-similarity
densities of both models). Per model: caption-level retrieval on all pairs (a hit is any
image or caption with the query's sentence), image-to-text retrieval against the distinct
captions, the retrieval of the images new to training (`unseen_caption`: a sentence no
training image has; `product_disjoint`: a product no training image shows) against the whole
gallery, mean similarities, and zero-shot attribute accuracy; each recall@K and accuracy
with its 95% Wilson interval (`fashion.metrics.intervals`). Ranks break ties by gallery index
(see `fashion.metrics.retrieval`). Under several processes (`accelerate.launch`) each embeds
its share of whole batches, and the main process writes the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import CLIPModel, CLIPProcessor

from fashion.clip.data import Pairs, read_pairs
from fashion.clip.models import embed_images, embed_texts, load_base_clip, load_clip
from fashion.core.atomic import atomic_path
from fashion.core.environment import environment
from fashion.core.params import load_params, section
from fashion.core.processes import Processes
from fashion.core.ranks import chunked_ranks
from fashion.core.stage import run_stage
from fashion.data.splits import evaluated_split
from fashion.metrics.intervals import joined, proportion, recall_intervals
from fashion.metrics.retrieval import (
    distinct_caption_ranks,
    recall_summary,
    similarity_histograms,
    similarity_means,
)
from fashion.metrics.zero_shot import ZeroShotClassifier, balanced_accuracy, judged_predictions


def recall(ranks: torch.Tensor) -> dict[str, Any]:
    """`recall_summary` of the ranks, each recall@K with its Wilson interval (n: the queries)."""
    return recall_summary(ranks) | recall_intervals(ranks.numpy())


def subset_retrieval(
    images: torch.Tensor, texts: torch.Tensor, caption: torch.Tensor, mask: np.ndarray, chunk: int
) -> dict[str, Any]:
    """Retrieval of the masked pairs' images and captions against the whole gallery."""
    out: dict[str, Any] = {"n": int(mask.sum())}
    if not mask.any():
        return out | {"i2t": None, "t2i": None}
    rows = torch.from_numpy(np.flatnonzero(mask))
    out["i2t"] = recall(chunked_ranks(images[rows], texts, caption[rows], caption, chunk))
    out["t2i"] = recall(chunked_ranks(texts[rows], images, caption[rows], caption, chunk))
    return out


def attribute_metrics(
    classifier: ZeroShotClassifier, images: torch.Tensor, codes: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy (with its n and Wilson interval) and balanced accuracy per attribute
    (sleeve code 4 left out)."""
    judged = judged_predictions(classifier, images, pd.DataFrame(codes))
    return {
        "attr_acc": joined(proportion(a, t == p) for a, (t, p) in judged.items()),
        "attr_balanced_acc": {a: balanced_accuracy(t, p) for a, (t, p) in judged.items()},
    }


def evaluate(
    model: CLIPModel,
    processor: CLIPProcessor,
    pairs: Pairs,
    new: dict[str, np.ndarray],
    p: dict[str, Any],
    processes: Processes,
) -> tuple[dict[str, Any], tuple]:
    """(metrics of one model, similarity histograms) on the sampled pairs; the embeddings
    computed over the processes, a share of whole batches each (a collective)."""
    device = processes.device
    model.eval().to(device)
    batch, chunk = int(p["batch_size"]), int(p["chunk"])

    def shared(embed: Any, items: Any) -> torch.Tensor:
        parts = processes.map_batches(
            lambda part: embed(model, processor, items[part], batch, device), len(items), batch
        )
        return torch.cat(parts)

    images = shared(embed_images, pairs.images)
    texts = shared(embed_texts, pairs.captions)
    caption = torch.from_numpy(pairs.caption_ids)
    metrics: dict[str, Any] = {
        "i2t": recall(chunked_ranks(images, texts, caption, caption, chunk)),
        "t2i": recall(chunked_ranks(texts, images, caption, caption, chunk)),
        "i2t_distinct": recall(distinct_caption_ranks(images, texts, caption, chunk)),
        "similarity": similarity_means(images, texts, caption, chunk),
    }
    for name, mask in new.items():
        metrics[name] = subset_retrieval(images, texts, caption, mask, chunk)
    classifier = ZeroShotClassifier(model, processor, device=device)
    metrics |= attribute_metrics(classifier, images, pairs.codes)
    hist = similarity_histograms(images, texts, caption, int(p["histogram_bins"]), chunk)
    return metrics, hist


def main(
    subset: Path = Path("data/subset"),
    base_clip: Path = Path("models/base_clip"),
    clip: Path = Path("models/clip"),
    metrics_file: Path = Path("metrics/clip.json"),
    plots: Path = Path("plots/clip"),
) -> None:
    params = load_params()
    p = section(params, "eval_clip")
    processes = Processes()  # each embeds its share of the batches; the main one writes
    split = evaluated_split(params, subset).sample(
        p["n_images"], int(p["seed"]), "eval_clip.n_images"
    )
    pairs = read_pairs(split.path, split.rows)
    new = split.new_to_training()
    counts = ", ".join(f"{int(m.sum())} {k.replace('_', ' ')}" for k, m in new.items())
    print(
        f"eval_clip: {len(pairs)} {split.name} pairs, {len(set(pairs.captions))} distinct "
        f"captions; new to training: {counts}"
    )

    results: dict[str, Any] = {
        "split": split.name,
        "n": len(pairs),
        "n_distinct_captions": len(set(pairs.captions)),
        "environment": environment(processes.device),
    }
    columns = {}
    models = {"base": load_base_clip(base_clip), "finetuned": load_clip(clip)}
    for name, (model, processor) in models.items():
        results[name], (edges, matched, unmatched) = evaluate(
            model, processor, pairs, new, p, processes
        )
        columns["similarity"] = (edges[:-1] + edges[1:]) / 2
        columns[f"{name}_matched"], columns[f"{name}_unmatched"] = matched, unmatched
        print(f"{name}: {json.dumps(results[name]['i2t'])}")
    print(processes.summary("eval_clip"))
    if not processes.is_main:
        return
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    with atomic_path(plots, is_dir=True) as tmp:
        pd.DataFrame(columns).to_csv(tmp / "similarity.csv", index=False, float_format="%.6g")


if __name__ == "__main__":
    run_stage(main)
