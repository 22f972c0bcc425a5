"""Image metrics of the generated garments: base vs fine-tuned SD, beside real test images.

Writes `metrics/generation.json` ({"base", "finetuned", "real"}: IS, FID, KID, CLIP score by
the base and by the fine-tuned CLIP, zero-shot attribute accuracy, distance to the nearest
training image) and `plots/evaluate/` (memorisation histograms). Every image set is first
brought to one size (the smaller of the generated and the real sizes), so the sets differ
only in content. The real images come as a cached reference (`stages/reference.py`: their
Inception features and fine-tuned CLIP embeddings at that size, and those of the train
images); the generated ones pass Inception once per set (IS logits and pool features) and
each CLIP once. Models and batches run on the GPU when there is one. IS/FID/KID are null
when `evaluate.skip_inception` is set (the offline default): never a number from random
Inception weights.
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

from fashion.clip.models import embed_images, embed_texts, load_base_clip, load_clip
from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.subset import read_table, subset_path
from fashion.metrics.image import (
    clip_score,
    extract_features,
    fetch_inception_weights,
    frechet_distance,
    inception_score,
    kernel_distance,
    load_arrays,
    load_inception,
    nearest_distances,
    resize_images,
)
from fashion.metrics.reference import compute_device
from fashion.metrics.zero_shot import ZeroShotClassifier, accuracy

MANIFEST_COLUMNS = ("file", "model", "prompt", "seed", *ATTRIBUTES)
MODELS = ("base", "finetuned")
SETS = (*MODELS, "real")
# written by stages/reference.py and stages/embed_reference.py
REFERENCES = (Path("data/reference/inception.npz"), Path("data/reference/clip.npz"))
UNSPECIFIED_SLEEVE = 4  # the caption names no sleeve: nothing to judge in the image


def read_generated(manifest: Path) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
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


def read_references(
    paths: tuple[Path, Path] = REFERENCES,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(Inception, CLIP) reference of the real images, checked to hold one test sample."""
    inception_path, clip_path = paths
    inception = load_arrays(inception_path, ("test_rows", "size", "real_size"), "reference")
    clip = load_arrays(clip_path, ("test_rows", "size", "test", "train"), "embed_reference")
    if not np.array_equal(inception["test_rows"], clip["test_rows"]):
        raise PipelineError(
            f"{clip_path}: another sample of test images than {inception_path} "
            "(re-run the reference stages: dvc repro)"
        )
    return inception, clip


def evaluation_size(
    generated: dict[str, np.ndarray],
    references: tuple[dict, dict],
    paths: tuple[Path, Path] = REFERENCES,
) -> int:
    """The smaller of the generated and real sizes, which the references must have used."""
    generated_size = min(im.shape[1] for im in generated.values())
    size = min(generated_size, int(references[0]["real_size"]))
    for path, reference in zip(paths, references, strict=True):
        if int(reference["size"]) != size:
            raise PipelineError(
                f"{path}: real images at {int(reference['size'])} px, but {generated_size} px "
                f"generated images are evaluated at {size} px (the reference follows "
                "generate.resolution: re-run it with dvc repro)"
            )
    return size


def inception_metrics(
    p: dict[str, Any], images: dict[str, np.ndarray], reference: dict[str, np.ndarray], device: str
) -> dict[str, dict]:
    """IS of every set; FID and KID of each generated set against the real test images.

    `images` are the generated sets; the real set's logits and pool features are in the
    Inception `reference`.
    """
    keys = ("inception_score", "inception_score_std", "fid", "kid", "kid_std")
    if p["skip_inception"]:
        print("IS/FID/KID: null (evaluate.skip_inception is true: no Inception-v3 weights used)")
        return {name: dict.fromkeys(keys) for name in SETS}
    model = load_inception(fetch_inception_weights(p["inception_weights"]), device)
    if "pool" not in reference:
        raise PipelineError(
            f"{REFERENCES[0]}: no Inception features (written with "
            "evaluate.skip_inception true): re-run the reference stage"
        )
    seed, batch = int(p["seed"]), int(p["batch_size"])
    features = {
        name: extract_features(images[name], model, batch, device)
        for name in tqdm(MODELS, desc="inception")
    }
    features["real"] = (torch.from_numpy(reference["logits"]), torch.from_numpy(reference["pool"]))
    real = features["real"][1]
    out = {}
    for name, (logits, pool) in features.items():
        is_mean, is_std = inception_score(logits, int(p["is_splits"]), seed)
        out[name] = {"inception_score": is_mean, "inception_score_std": is_std}
        if name == "real":
            out[name] |= {"fid": None, "kid": None, "kid_std": None}
            continue
        kid, kid_std = kernel_distance(
            pool, real, int(p["kid_subsets"]), int(p["kid_subset_size"]), seed
        )
        out[name] |= {"fid": frechet_distance(pool, real), "kid": kid, "kid_std": kid_std}
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
    device: str,
) -> dict[str, float]:
    """CLIP score of each SD model's images with their prompts, by one CLIP."""
    model, processor = clip
    return {
        name: clip_score(
            embed_images(model, processor, images[name], batch, device),
            embed_texts(model, processor, prompts[name], batch, device),
        )
        for name in MODELS
    }


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


def judge_in_clip_space(
    clip: tuple[CLIPModel, CLIPProcessor],
    images: dict[str, np.ndarray],
    codes: dict[str, pd.DataFrame],
    reference: dict[str, np.ndarray],
    batch: int,
    device: str,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Per set: zero-shot attribute accuracy and mean distance to the nearest train image,
    by the fine-tuned CLIP (real and train embeddings from the cached reference), and the
    distances themselves."""
    model, processor = clip
    classifier = ZeroShotClassifier(model, processor, device=device)
    train = torch.from_numpy(reference["train"])
    embeddings = {
        name: embed_images(model, processor, images[name], batch, device) for name in MODELS
    }
    embeddings["real"] = torch.from_numpy(reference["test"])
    metrics, distances = {}, {}
    for name in SETS:
        distances[name] = nearest_distances(embeddings[name], train)
        metrics[name] = {
            "n_images": len(embeddings[name]),
            "attr_acc": attribute_accuracy(classifier, embeddings[name], codes[name]),
            "nearest_train_distance": float(distances[name].mean()),
        }
    return metrics, distances


def main(
    subset: Path = Path("data/subset"),
    generated_images: Path = Path("data/generated"),
    inception_reference: Path = REFERENCES[0],
    clip_reference: Path = REFERENCES[1],
    base_clip: Path = Path("models/base_clip"),
    clip: Path = Path("models/clip"),
    metrics_file: Path = Path("metrics/generation.json"),
    plots: Path = Path("plots/evaluate"),
) -> None:
    p = section(load_params(), "evaluate")
    batch = int(p["batch_size"])
    device = compute_device()
    generated = read_generated(generated_images / "manifest.csv")
    reference_paths = (inception_reference, clip_reference)
    references = read_references(reference_paths)
    size = evaluation_size(
        {name: im for name, (_, im) in generated.items()}, references, reference_paths
    )
    images = {name: resize_images(im, size) for name, (_, im) in generated.items()}
    prompts = {name: rows["prompt"].astype(str).tolist() for name, (rows, _) in generated.items()}
    codes = {name: rows[list(ATTRIBUTES)] for name, (rows, _) in generated.items()}
    real_rows = references[0]["test_rows"]
    test_table = read_table(subset_path(subset, "test"))
    codes["real"] = test_table.iloc[real_rows][list(ATTRIBUTES)].reset_index(drop=True)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in images.items())
    print(f"evaluating at {size} px on {device}: {sizes}, real {len(real_rows)}")

    metrics = inception_metrics(p, images, references[0], device)
    clips = {"clip_score": load_base_clip(base_clip), "clip_score_finetuned_clip": load_clip(clip)}
    for key, (model, processor) in clips.items():
        model.to(device)
        for name, score in clip_scores((model, processor), images, prompts, batch, device).items():
            metrics[name][key] = score
        metrics["real"][key] = None
    judged, distances = judge_in_clip_space(
        clips["clip_score_finetuned_clip"], images, codes, references[1], batch, device
    )
    for name in SETS:
        metrics[name] |= judged[name]

    with atomic_path(plots, is_dir=True) as tmp:
        plot_memorisation(distances, int(p["histogram_bins"]), tmp)
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    run_stage(main)
