"""Metrics of redress (`metrics/redress.json`): base vs fine-tuned inpainting on the same
official pairs, with the target's own photo as the ceiling.

Per model: attribute transfer by judge (`fashion.metrics.redress`: target accuracy and
source leak over the pairs that change an attribute, kept over those that do not; judges
as in `evaluate`: the fine-tuned CLIP, the base CLIP zero-shot, on the demo the pixel
colour judge); the preservation check (the largest pixel difference outside the mask: 0
for a composite); realism (FID/KID of the redressed images whose source lies in one half of
the test split against the real images of the other half; null when
`evaluate.skip_inception`); MGD's CLIP-S (`clip_s_garment`: the redrawn region pasted on
white, scored with the target sentence by each CLIP); in v2 the shape rules on the target
maps (`shape`, `fashion.metrics.shape`: do they show the target's sleeve and length).
Every share carries its n and 95% interval, and
`finetuned_minus_base` the paired difference on the same pairs. Under several processes
(`accelerate.launch`) each embeds its share of whole batches of images, and the main
process writes the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from fashion.clip.models import load_base_clip, load_clip
from fashion.core.atomic import atomic_path
from fashion.core.environment import environment
from fashion.core.params import load_params, section
from fashion.core.processes import Processes
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.subset import read_images, read_segmentation, read_table, subset_path
from fashion.metrics.image import (
    fid_kid,
    inception_mode,
    inception_weights,
    load_inception,
    shared_features,
)
from fashion.metrics.judges import Judges
from fashion.metrics.redress import (
    outside_mask_difference,
    redress_blocks,
    redress_gains,
    redress_hits,
)
from fashion.metrics.shape import rule_blocks
from fashion.shape.maps import MAP_FEATURES, RULES, MapRule

MODELS = ("base", "finetuned")
INPUTS = "inputs.npz"  # written by redress


def read_redressed(folder: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(the pairs, in order; per model its uint8 images in the same order)."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise PipelineError(f"{manifest}: manifest of redressed images not found (run redress)")
    table = pd.read_csv(manifest)
    images, pairs = {}, None
    for model in MODELS:
        rows = table[table["model"] == model].sort_values("pair").reset_index(drop=True)
        if pairs is None:
            pairs = rows
        elif not rows[["source_row", "target_row"]].equals(pairs[["source_row", "target_row"]]):
            raise PipelineError(f"{manifest}: base and fine-tuned were run on other pairs")
        try:
            images[model] = np.stack([np.asarray(Image.open(folder / f)) for f in rows["file"]])
        except (OSError, ValueError) as err:
            raise PipelineError(f"{manifest}: cannot read the '{model}' images ({err})") from err
    return pairs, images


def read_inputs(folder: Path, n_pairs: int) -> dict[str, np.ndarray]:
    """Each pair's mask (and in v2 target map) as redress used them."""
    path = folder / INPUTS
    if not path.is_file():
        raise PipelineError(f"{path}: not found (run redress again: it records the masks)")
    with np.load(path) as saved:
        inputs = {k: saved[k] for k in saved.files}
    if len(inputs["masks"]) != n_pairs:
        raise PipelineError(f"{path}: {len(inputs['masks'])} masks for {n_pairs} pairs")
    return inputs


def on_white(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """uint8 images with everything outside the masks white: the redrawn region alone, as
    MGD scores its garments (CLIP-S)."""
    return np.where(masks[..., None], images, np.uint8(255))


def read_rules(shape: Path) -> dict[str, MapRule]:
    raw = json.loads((shape / RULES).read_text())
    return {a: MapRule.from_json(a, raw[a]) for a in MAP_FEATURES}


def numeric(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def realism(
    p: dict[str, Any], images: dict[str, np.ndarray], reference: np.ndarray, processes: Processes
) -> dict[str, dict]:
    """FID and KID of each image set against the reference images (null when skipped); the
    features computed over the processes."""
    with processes.state.main_process_first():  # one download, then the others read it
        weights = inception_weights(p, "evaluate_redress")
    if weights is None:
        return {name: {"fid": None, "kid": None, "kid_std": None} for name in images}
    device = processes.device
    model = load_inception(weights, device)
    batch = int(p["batch_size"])

    def pool(shown: np.ndarray) -> Any:
        return shared_features(shown, model, batch, device, processes)[1]

    real = pool(reference)
    return {name: fid_kid(pool(shown), real, p) for name, shown in images.items()}


def main(
    subset: Path = Path("data/subset"),
    redressed: Path = Path("data/redressed"),
    base_clip: Path = Path("models/base_clip"),
    clip: Path = Path("models/clip"),
    shape: Path = Path("models/shape"),
    metrics_file: Path = Path("metrics/redress.json"),
) -> None:
    params = load_params()
    p = section(params, "evaluate")
    processes = Processes()  # each embeds its share of the batches; the main one writes
    device = processes.device
    pairs, images = read_redressed(redressed)
    # the split's file: test.h5, or train.h5 for the validation split's pairs
    split_file = subset_path(subset, "test" if pairs["split"].iloc[0] == "test" else "train")
    table = read_table(split_file)
    source, target = pairs["source_row"].to_numpy(), pairs["target_row"].to_numpy()
    sources = read_images(split_file, source)
    inputs = read_inputs(redressed, len(pairs))
    masks = inputs["masks"]
    images["ceiling"] = read_images(split_file, target)  # the target's own photo
    reference = pd.read_csv(redressed / "reference.csv")["row"].to_numpy()
    seed = int(p["seed"])  # of the bootstrap intervals
    judges = Judges(
        {"finetuned_clip": load_clip(clip), "base_clip": load_base_clip(base_clip)},
        bool(p["pixel_judge"]),
        int(p["batch_size"]),
        device,
        processes,
        seed=seed,
    )
    codes = table[list(ATTRIBUTES)]
    source_codes = codes.iloc[source].reset_index(drop=True)
    target_codes = codes.iloc[target].reset_index(drop=True)
    scored = pairs["realism"].to_numpy(dtype=bool)
    scores = realism(
        p, {k: v[scored] for k, v in images.items()}, read_images(split_file, reference), processes
    )
    metrics: dict[str, Any] = {
        "split": str(pairs["split"].iloc[0]),
        "n_pairs": len(pairs),
        "realism": {
            "n_redressed": int(scored.sum()),
            "n_reference": len(reference),
            # computed | skipped (skip_inception: true) | unavailable (auto, no weights here)
            "inception": inception_mode(p, any(v["fid"] is not None for v in scores.values())),
        },
        "changes_gender": int((source_codes["gender"] != target_codes["gender"]).sum()),
        "environment": environment(device),
    }
    hits = {}
    prompts = pairs["target_caption"].tolist()
    for name, shown in images.items():
        hits[name] = redress_hits(judges, shown, source_codes, target_codes)
        block = {"attr": redress_blocks(hits[name])}
        if name in MODELS:
            block["max_abs_diff_outside_mask"] = outside_mask_difference(shown, sources, masks)
        garments = on_white(shown, masks)  # the ceiling: the target's photo under the same mask
        block["clip_s_garment"] = judges.clip_scores(judges.embed(garments), prompts)
        metrics[name] = block | scores[name]
    if "maps" in inputs:  # v2: do the target maps show the sentence's sleeve and length?
        target_maps = read_segmentation(split_file, target)
        metrics["shape"] = rule_blocks(
            read_rules(shape),
            {"predicted": inputs["maps"], "target_map": target_maps},
            {a: numeric(source_codes[a]) for a in MAP_FEATURES},
            {a: numeric(target_codes[a]) for a in MAP_FEATURES},
        )
    # the number the base-vs-fine-tuned claims rest on: a paired interval on the same pairs
    metrics["finetuned_minus_base"] = {"attr": redress_gains(hits["base"], hits["finetuned"], seed)}
    print(processes.summary("evaluate_redress"))
    if not processes.is_main:
        return
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    run_stage(main)
