"""Image metrics of the generated garments: base vs fine-tuned SD, beside real test images.

Writes `metrics/generation.json` ({"base", "finetuned", "real"}: IS, FID, KID, CLIP score by
the base and by the fine-tuned CLIP, zero-shot attribute accuracy, distance to the nearest
training image) and `plots/evaluate/` (memorisation histograms). Every image set is first
brought to one size (the smaller of the generated and the real sizes), so the sets differ
only in content. IS/FID/KID are null when `evaluate.skip_inception` is set (the offline
default): never a number from random Inception weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm
from transformers import CLIPModel, CLIPProcessor

from fashion.atomic import atomic_path
from fashion.clip_data import sample_rows
from fashion.clip_models import embed_images, embed_texts, load_base_clip, load_clip
from fashion.config import PARAMS_FILE, PipelineError, load_params, run_stage, section
from fashion.image_metrics import (
    clip_score,
    extract_features,
    frechet_distance,
    inception_score,
    inception_weights_path,
    kernel_distance,
    load_inception,
    nearest_distances,
    resize_images,
)
from fashion.subset import CODE_FIELDS, read_images, read_table, subset_path
from fashion.zero_shot import ATTRIBUTES, ZeroShotClassifier, accuracy

GENERATED = Path("data/generated")
MANIFEST = GENERATED / "manifest.csv"
MANIFEST_COLUMNS = ("file", "model", "prompt", "seed", *CODE_FIELDS)
MODELS = ("base", "finetuned")
SETS = (*MODELS, "real")
BASE_CLIP, CLIP = Path("models/base_clip"), Path("models/clip")
METRICS = Path("metrics/generation.json")
PLOTS = Path("plots/evaluate")
UNSPECIFIED_SLEEVE = 4  # the caption names no sleeve: nothing to judge in the image
TRAIN_CHUNK = 2048  # train images read, resized and embedded at a time


def read_generated(manifest: Path = MANIFEST) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Per SD model: its manifest rows and uint8 (n, h, w, 3) images, in manifest order.

    `file` is relative to the manifest's folder (or to the project root).
    """
    if not manifest.is_file():
        raise PipelineError(f"{manifest}: manifest of generated images not found (run generate)")
    table = pd.read_csv(manifest)
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise PipelineError(f"{manifest}: missing columns {missing}")
    out = {}
    for model in MODELS:
        rows = table[table["model"] == model].reset_index(drop=True)
        if len(rows) < 2:
            raise PipelineError(
                f"{manifest}: {len(rows)} images of model '{model}', need 2 or more"
            )
        images = []
        for name in rows["file"]:
            path = manifest.parent / name
            try:
                with Image.open(path if path.is_file() else Path(name)) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except OSError as err:
                raise PipelineError(f"{manifest}: cannot read image {name} ({err})") from err
        if len({im.shape for im in images}) != 1:
            raise PipelineError(f"{manifest}: the '{model}' images differ in size")
        out[model] = (rows, np.stack(images))
    return out


def sample_split(
    split: str, n: int | str, seed: int, param: str
) -> tuple[Path, np.ndarray, pd.DataFrame]:
    """(file, rows, table rows) of a fixed-seed sample of a subset split."""
    path = subset_path("data/subset", split)
    table = read_table(path)
    try:
        rows = sample_rows(len(table), n, seed)
    except PipelineError as err:
        raise PipelineError(f"{PARAMS_FILE}: evaluate.{param}: {err}") from err
    return path, rows, table.iloc[rows].reset_index(drop=True)


def inception_metrics(p: dict[str, Any], images: dict[str, np.ndarray]) -> dict[str, dict]:
    """IS of every set; FID and KID of each generated set against the real test images."""
    keys = ("inception_score", "inception_score_std", "fid", "kid", "kid_std")
    if p["skip_inception"]:
        print("IS/FID/KID: null (evaluate.skip_inception is true: no Inception-v3 weights used)")
        return {name: dict.fromkeys(keys) for name in SETS}
    weights = inception_weights_path(p["inception_weights"])
    classifier, pool = load_inception(weights, "logits_unbiased"), load_inception(weights, "2048")
    seed, batch = int(p["seed"]), int(p["batch_size"])
    real = extract_features(images["real"], pool, batch)
    out = {}
    for name in tqdm(SETS, desc="inception"):
        is_mean, is_std = inception_score(
            images[name], classifier, int(p["is_splits"]), seed, batch
        )
        out[name] = {"inception_score": is_mean, "inception_score_std": is_std}
        if name == "real":
            out[name] |= {"fid": None, "kid": None, "kid_std": None}
            continue
        fake = extract_features(images[name], pool, batch)
        kid, kid_std = kernel_distance(
            fake, real, int(p["kid_subsets"]), int(p["kid_subset_size"]), seed
        )
        out[name] |= {"fid": frechet_distance(fake, real), "kid": kid, "kid_std": kid_std}
    return out


def attribute_accuracy(
    classifier: ZeroShotClassifier, embeds: torch.Tensor, codes: pd.DataFrame
) -> dict[str, float | None]:
    """Zero-shot accuracy per attribute, over the images whose prompt names that attribute."""
    out: dict[str, float | None] = {}
    for attribute in ATTRIBUTES:
        truth = pd.to_numeric(codes[attribute], errors="coerce").to_numpy(dtype=float)
        known = ~np.isnan(truth)
        if attribute == "sleeve":
            known &= truth != UNSPECIFIED_SLEEVE
        known_rows = torch.from_numpy(known)
        out[attribute] = (
            accuracy(truth[known], classifier.predict(embeds[known_rows], attribute))
            if known.any()
            else None
        )
    return out


def clip_scores(
    clip: tuple[CLIPModel, CLIPProcessor],
    images: dict[str, np.ndarray],
    prompts: dict[str, list[str]],
    batch: int,
) -> dict[str, float]:
    """CLIP score of each SD model's images with their prompts, by one CLIP."""
    model, processor = clip
    return {
        name: clip_score(
            embed_images(model, processor, images[name], batch),
            embed_texts(model, processor, prompts[name], batch),
        )
        for name in MODELS
    }


def embed_train(
    model: CLIPModel, processor: CLIPProcessor, path: Path, rows: np.ndarray, size: int, batch: int
) -> torch.Tensor:
    """Fine-tuned CLIP embeddings of training images, streamed in chunks (never all in memory)."""
    chunks = [rows[i : i + TRAIN_CHUNK] for i in range(0, len(rows), TRAIN_CHUNK)]
    return torch.cat(
        [
            embed_images(model, processor, resize_images(read_images(path, chunk), size), batch)
            for chunk in tqdm(chunks, desc="train embeddings")
        ]
    )


def plot_memorisation(distances: dict[str, np.ndarray], bins: int, out_dir: Path) -> None:
    """Histogram tables (one CSV per set, for `dvc plots`) and an overlaid PNG."""
    top = max(float(d.max()) for d in distances.values())
    edges = np.linspace(0.0, max(top, 1e-6), bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).round(4)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, d in distances.items():
        counts, _ = np.histogram(d, edges)
        table = pd.DataFrame({"distance": centres, "share": counts / len(d)})
        table.to_csv(out_dir / f"memorisation_{name}.csv", index=False)
        ax.hist(d, edges, histtype="step", density=True, label=f"{name} (mean {d.mean():.3f})")
    ax.set(xlabel="cosine distance to the nearest train image (fine-tuned CLIP)", ylabel="density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "memorisation.png", dpi=100)


def main() -> None:
    p = section(load_params(), "evaluate")
    seed, batch = int(p["seed"]), int(p["batch_size"])
    generated = read_generated()
    test_path, test_rows, test_table = sample_split("test", p["n_real"], seed, "n_real")
    train_path, train_rows, _ = sample_split(
        "train", p["n_train_reference"], seed, "n_train_reference"
    )
    real = read_images(test_path, test_rows)
    size = min(min(im.shape[1] for _, im in generated.values()), real.shape[1])
    images = {name: resize_images(im, size) for name, (_, im) in generated.items()}
    images["real"] = resize_images(real, size)
    prompts = {name: rows["prompt"].astype(str).tolist() for name, (rows, _) in generated.items()}
    codes = {name: rows[list(ATTRIBUTES)] for name, (rows, _) in generated.items()}
    codes["real"] = test_table[list(ATTRIBUTES)]
    print(f"evaluating at {size} px: " + ", ".join(f"{k} {len(v)}" for k, v in images.items()))

    metrics = inception_metrics(p, images)
    base_clip, finetuned_clip = load_base_clip(BASE_CLIP), load_clip(CLIP)
    for key, clip in (("clip_score", base_clip), ("clip_score_finetuned_clip", finetuned_clip)):
        for name, score in clip_scores(clip, images, prompts, batch).items():
            metrics[name][key] = score
        metrics["real"][key] = None

    # attributes and memorisation: judged in the fine-tuned CLIP's image space
    model, processor = finetuned_clip
    classifier = ZeroShotClassifier(model, processor)
    train = embed_train(model, processor, train_path, train_rows, size, batch)
    distances = {}
    for name in SETS:
        embeds = embed_images(model, processor, images[name], batch)
        distances[name] = nearest_distances(embeds, train)
        metrics[name] |= {
            "n_images": len(images[name]),
            "attr_acc": attribute_accuracy(classifier, embeds, codes[name]),
            "nearest_train_distance": float(distances[name].mean()),
        }

    with atomic_path(PLOTS, is_dir=True) as tmp:
        plot_memorisation(distances, int(p["histogram_bins"]), tmp)
    with atomic_path(METRICS) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    run_stage(main)
