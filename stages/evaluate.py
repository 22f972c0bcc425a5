"""Image metrics of the generated garments: base vs fine-tuned SD, beside the real images.

The matched set (`generate`): one generated image per real image of a fixed-seed sample of
the evaluated split, from that image's caption. IS, FID, KID and CLIP score compare each
model's matched images with those same real images: the same count, the same size, equal IS
split sizes; the real images with their own captions are the ceiling. Attribute accuracy is
given by several judges: the fine-tuned CLIP (trained on the same pairs as the generator),
the base CLIP zero-shot and, on the demo, the pixel colour judge (neither trained on them).
Memorisation is the distance to the nearest training image in pixels at
`reference.memorisation_size` px, a space no model was trained in, with the real images' own
distance as the reference. The prompt grid is judged too, split into attribute combinations
seen in training (at least `evaluate.seen_min_count` training images) and unseen ones (none).
Every accuracy, CLIP score and memorisation distance carries its n and 95% interval
(`fashion.metrics.intervals`); `matched.finetuned_minus_base` gives the paired difference of
the attribute accuracies on the same images, the number a base-vs-fine-tuned claim rests on.

Writes `metrics/generation.json` and `plots/evaluate/` (memorisation histograms). Every image
set is first brought to one size, the smaller of the generated and real sizes. Models run
on the GPU when there is one; under several processes (`accelerate.launch`) each embeds its
share of whole batches, and the main process writes the metrics of them all. IS/FID/KID are
null when `evaluate.skip_inception` is set (the offline default): never a number from random
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

from fashion.clip.models import load_base_clip, load_clip
from fashion.core.atomic import atomic_path
from fashion.core.environment import environment
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.processes import Processes
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.splits import EvaluatedSplit, matched_sample
from fashion.data.subset import read_images
from fashion.metrics.image import (
    RERUN_INCEPTION,
    fid_kid,
    inception_mode,
    inception_score,
    inception_weights,
    load_arrays,
    load_inception,
    nearest_pixel_distances,
    resize_images,
    shared_features,
)
from fashion.metrics.intervals import mean
from fashion.metrics.judges import Judges, accuracy_blocks, grid_metrics, paired_gains

MANIFEST_COLUMNS = ("file", "model", "prompt", "seed", "source", "row", *ATTRIBUTES)
MODELS = ("base", "finetuned")
SETS = (*MODELS, "real")
REFERENCE = Path("data/reference/real.npz")  # written by stages/reference.py
REFERENCE_KEYS = ("split", "rows", "size", "real_size", "train_pixels")
INCEPTION_KEYS = ("inception_score", "inception_score_std", "fid", "kid", "kid_std")


def read_generated(manifest: Path) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Per SD model: its manifest rows and uint8 (n, h, w, 3) images, in manifest order.

    `file` is relative to the manifest's folder (or to the project root).
    """
    if not manifest.is_file():
        raise PipelineError(f"{manifest}: manifest of generated images not found (run generate)")
    table = pd.read_csv(manifest)
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise PipelineError(f"{manifest}: missing columns {missing} (re-run generate)")
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


def matched_split(
    params: dict[str, Any], subset: Path, reference: dict[str, np.ndarray], path: Path
) -> EvaluatedSplit:
    """The evaluated split's matched sample, checked to be the one the reference holds."""
    split = matched_sample(params, subset)
    if str(reference["split"]) != split.name or not np.array_equal(reference["rows"], split.rows):
        raise PipelineError(
            f"{path}: holds another sample of real images than {PARAMS_FILE} names "
            "(split.evaluate, reference.n_images, reference.seed): re-run it with dvc repro"
        )
    return split


def check_size(
    generated: dict[str, np.ndarray], reference: dict[str, np.ndarray], path: Path
) -> int:
    """The evaluation size: the smaller of the generated and real sizes, as the reference used."""
    generated_size = min(im.shape[1] for im in generated.values())
    size = min(generated_size, int(reference["real_size"]))
    if int(reference["size"]) != size:
        raise PipelineError(
            f"{path}: real images at {int(reference['size'])} px, but {generated_size} px "
            f"generated images are evaluated at {size} px (the reference follows "
            "generate.resolution: re-run it with dvc repro)"
        )
    return size


def matched_images(
    generated: dict[str, tuple[pd.DataFrame, np.ndarray]], rows: np.ndarray, manifest: Path
) -> dict[str, np.ndarray]:
    """Per SD model, its matched images in the order of the real sample's rows."""
    out = {}
    for model, (table, images) in generated.items():
        matched = table.index[table["source"] == "matched"].to_numpy()
        if not np.array_equal(table["row"].to_numpy()[matched].astype(np.int64), rows):
            raise PipelineError(
                f"{manifest}: the '{model}' matched images are not one per row of the real "
                "sample (re-run generate: dvc repro)"
            )
        out[model] = images[matched]
    return out


def inception_metrics(
    p: dict[str, Any],
    images: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    device: torch.device | str,
    processes: Processes | None = None,
) -> dict[str, dict]:
    """IS of every set; FID and KID of each generated set against the real images.

    `images` are the generated sets (their features computed over the `processes`); the real
    set's logits and pool features are in the reference. Every set has the same count, so
    equal `is_splits` give equal split sizes.
    """
    # the weights first: a fresh machine whose reference came from the DVC cache fetches them
    processes = processes or Processes()
    with processes.state.main_process_first():  # one download, then the others read it
        weights = inception_weights(p, "evaluate")
    if weights is None:
        return {name: dict.fromkeys(INCEPTION_KEYS) for name in SETS}
    if "pool" not in reference:
        raise PipelineError(
            f"{REFERENCE}: no Inception features (written without the weights): "
            f"re-run the Inception stages: {RERUN_INCEPTION}"
        )
    model = load_inception(weights, device)
    seed, batch = int(p["seed"]), int(p["batch_size"])
    features = {
        name: shared_features(images[name], model, batch, device, processes)
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
        out[name] |= fid_kid(pool, real, p)
    return out


def plot_memorisation(distances: dict[str, np.ndarray], bins: int, out_dir: Path, px: int) -> None:
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
    ax.set(
        xlabel=f"RMS pixel distance to the nearest training image ({px} px, 0-1 scale)",
        ylabel="density",
        title="Memorisation: matched set vs real images",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "memorisation.png", dpi=100)


def main(
    subset: Path = Path("data/subset"),
    generated_images: Path = Path("data/generated"),
    reference: Path = REFERENCE,
    base_clip: Path = Path("models/base_clip"),
    clip: Path = Path("models/clip"),
    metrics_file: Path = Path("metrics/generation.json"),
    plots: Path = Path("plots/evaluate"),
) -> None:
    params = load_params()
    p = section(params, "evaluate")
    processes = Processes()  # each embeds its share of the batches; the main one writes
    batch, device = int(p["batch_size"]), processes.device
    manifest = generated_images / "manifest.csv"
    generated = read_generated(manifest)
    real_reference = load_arrays(reference, REFERENCE_KEYS, "reference")
    split = matched_split(params, subset, real_reference, reference)
    size = check_size({m: im for m, (_, im) in generated.items()}, real_reference, reference)
    images = {
        m: resize_images(im, size)
        for m, im in matched_images(generated, split.rows, manifest).items()
    }
    images["real"] = resize_images(read_images(split.path, split.rows), size)
    n = len(split.rows)
    print(f"evaluating at {size} px on {device}: {n} matched {split.name} images per set")

    matched: dict[str, Any] = {"n": n, "is_split_size": n // int(p["is_splits"])}
    for name, values in inception_metrics(p, images, real_reference, device, processes).items():
        matched[name] = values
    # computed | skipped (skip_inception: true) | unavailable (auto, no weights here)
    matched["inception"] = inception_mode(p, matched["real"]["inception_score"] is not None)
    seed = int(p["seed"])  # of the bootstrap intervals
    judges = Judges(
        {"finetuned_clip": load_clip(clip), "base_clip": load_base_clip(base_clip)},
        bool(p["pixel_judge"]),
        batch,
        device,
        processes,
        seed=seed,
    )
    codes = split.table[list(ATTRIBUTES)]
    captions = split.table["caption"].tolist()
    mem_size = int(section(params, "reference")["memorisation_size"])
    distances, hits = {}, {}
    for name in SETS:
        embeds = judges.embed(images[name])
        matched[name]["clip_score"] = judges.clip_scores(embeds, captions)
        hits[name] = judges.attribute_hits(images[name], embeds, codes)
        matched[name]["attr_acc"] = accuracy_blocks(hits[name])
        distances[name] = nearest_pixel_distances(
            resize_images(images[name], mem_size), real_reference["train_pixels"], device
        )
        matched[name] |= mean("nearest_train_pixels", distances[name], seed)
    # the number the base-vs-fine-tuned claims rest on: a paired interval on the same images
    matched["finetuned_minus_base"] = {
        "attr_acc": paired_gains(hits["base"], hits["finetuned"], seed)
    }

    metrics = {"split": split.name, "matched": matched, "environment": environment(device)}
    metrics["grid"] = grid_metrics(
        judges, generated, size, split.training, int(p["seen_min_count"])
    )
    print(processes.summary("evaluate"))
    if not processes.is_main:
        return

    with atomic_path(plots, is_dir=True) as tmp:
        plot_memorisation(distances, int(p["histogram_bins"]), tmp, mem_size)
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    run_stage(main)
