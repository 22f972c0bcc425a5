"""Metrics of redress (`metrics/redress.json`): base vs fine-tuned inpainting on the same
official pairs, with the target's own photo as the ceiling.

Per model: attribute transfer by judge (`fashion.metrics.redress`: target accuracy and
source leak over the pairs that change an attribute, kept over those that do not; judges
as in `evaluate`: the fine-tuned CLIP, the base CLIP zero-shot, on the demo the pixel
colour judge); the preservation check (the largest pixel difference outside the mask: 0
for a composite); realism (FID/KID of the redressed images whose source lies in one half of
the test split against the real images of the other half; null when
`evaluate.skip_inception`). Every share carries its n and 95% interval, and
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
from fashion.inpaint.masks import redress_masks
from fashion.metrics.image import (
    fetch_inception_weights,
    fid_kid,
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

MODELS = ("base", "finetuned")


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


def realism(
    p: dict[str, Any], images: dict[str, np.ndarray], reference: np.ndarray, processes: Processes
) -> dict[str, dict]:
    """FID and KID of each image set against the reference images (null when skipped); the
    features computed over the processes."""
    if p["skip_inception"]:
        return {name: {"fid": None, "kid": None, "kid_std": None} for name in images}
    device = processes.device
    with processes.state.main_process_first():  # one download, then the others read it
        weights = fetch_inception_weights(p["inception_weights"])
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
    metrics_file: Path = Path("metrics/redress.json"),
) -> None:
    params = load_params()
    p, r = section(params, "evaluate"), section(params, "redress")
    processes = Processes()  # each embeds its share of the batches; the main one writes
    device = processes.device
    pairs, images = read_redressed(redressed)
    # the split's file: test.h5, or train.h5 for the validation split's pairs
    split_file = subset_path(subset, "test" if pairs["split"].iloc[0] == "test" else "train")
    table = read_table(split_file)
    source, target = pairs["source_row"].to_numpy(), pairs["target_row"].to_numpy()
    sources = read_images(split_file, source)
    masks = redress_masks(read_segmentation(split_file, source), r)
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
        "realism": {"n_redressed": int(scored.sum()), "n_reference": len(reference)},
        "changes_gender": int((source_codes["gender"] != target_codes["gender"]).sum()),
        "environment": environment(device),
    }
    hits = {}
    for name, shown in images.items():
        hits[name] = redress_hits(judges, shown, source_codes, target_codes)
        block = {"attr": redress_blocks(hits[name])}
        if name in MODELS:
            block["max_abs_diff_outside_mask"] = outside_mask_difference(shown, sources, masks)
        metrics[name] = block | scores[name]
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
