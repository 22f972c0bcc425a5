"""Redress test images to the sentences of their official pairs, base and fine-tuned.

For a fixed-seed sample of the benchmark's pairs (`redress.n_images`;
`fashion.inpaint.redress`; on `split.evaluate: validation`, seeded pairs of validation
images instead, for choosing defaults), each source's garment region (`redress` mask
params; `redress.version` v2: joined with the garments of the target map the shape model
draws, models/shape) is redrawn to its target's sentence by the zero-shot base
(`fashion.inpaint.models`) and by the fine-tuned inpainting model (in v2 reading the map),
with the same seeds, then composited so every pixel outside the mask is the source's.
Writes data/redressed/{base,finetuned}/*.png with
data/redressed/manifest.csv (file, model, split, seed, pair, the source and target rows, benchmark
indices and captions, whether realism scores it), reference.csv (the test rows of the
realism reference) and plots/redress/grid.png (rows of input | target sentence | base |
fine-tuned, and in v2 the target map before them); inputs.npz holds each pair's mask (and in v2
its target map). A run stopped midway keeps its finished batches in data/redressed.partial/, and
the next run samples only the rest. Under several processes (`accelerate.launch`) each
samples its share of the batches there; the main process then writes the outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion.core.atomic import atomic_path
from fashion.core.grids import sentence_grid
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.pairs import redress_rows, validation_pairs
from fashion.data.splits import evaluated_split
from fashion.data.subset import read_images, read_segmentation, read_table
from fashion.inpaint.models import base_pipeline, load_finetuned_inpainting
from fashion.inpaint.redress import (
    redress_images,
    redress_inputs,
    redress_version,
    sample_pairs,
)
from fashion.inpaint.unet import MapConditionedUNet, with_map_channels
from fashion.sd.sampling import (
    check_scheduler,
    device_and_dtype,
    finished_batches,
    ready_to_sample,
)
from fashion.shape.maps import colored_maps
from fashion.shape.model import load_shape_model

MODELS = ("base", "finetuned")
INPUTS = "inputs.npz"  # each pair's mask and (v2) target map, in pair order


def check_maps(pipe, version: str, inpaint: Path) -> None:
    """The fine-tuned UNet reads maps exactly when redress is v2."""
    reads_maps = isinstance(pipe.unet, MapConditionedUNet)
    if reads_maps != (version == "v2"):
        trained = "v2 (it reads target maps)" if reads_maps else "v1 (no map channels)"
        raise PipelineError(
            f"{inpaint}: trained for redress {trained}, but {PARAMS_FILE} sets redress.version "
            f"{version}: run finetune_inpaint again (dvc repro does)"
        )


def main(
    subset: Path = Path("data/subset"),
    base_inpaint: Path = Path("models/base_inpaint"),
    inpaint: Path = Path("models/inpaint"),
    shape: Path = Path("models/shape"),
    out: Path = Path("data/redressed"),
    plots: Path = Path("plots/redress"),
) -> None:
    params = load_params()
    p = section(params, "redress")
    scheduler = check_scheduler(p.get("scheduler"), "redress.scheduler")
    device, dtype = device_and_dtype(p["precision"], "redress.precision")
    split = evaluated_split(params, subset)
    pairs = (
        redress_rows(split.path)
        if split.name == "test"
        else validation_pairs(split.rows, int(p["seed"]))
    )
    table = read_table(split.path)
    sample = sample_pairs(*pairs, split.rows, p["n_images"], int(p["seed"]))
    images = read_images(split.path, sample.source)
    prompts = table["caption"].iloc[sample.target].tolist()
    version = redress_version(p)
    shape_model = load_shape_model(shape) if version == "v2" else None
    inputs = redress_inputs(read_segmentation(split.path, sample.source), prompts, p, shape_model)
    seeds = [int(p["seed"]) + k for k in range(len(prompts))]
    finished = finished_batches(
        out,
        p,
        device,
        dtype,
        (split.path, base_inpaint, inpaint) + ((shape,) if version == "v2" else ()),
        pairs=[sample.source.tolist(), sample.target.tolist()],
    )
    for model in MODELS:
        if model == "base":
            pipe = base_pipeline(base_inpaint, torch_dtype=dtype)
        else:
            pipe = with_map_channels(load_finetuned_inpainting(inpaint, torch_dtype=dtype))
            check_maps(pipe, version, inpaint)
        pipe = ready_to_sample(pipe, scheduler).to(device)
        maps = inputs.maps if model == "finetuned" else None
        redress_images(pipe, images, inputs.masks, prompts, seeds, p, finished, model, maps)
    finished.wait()  # every process's batches are in
    print(finished.processes.summary("redress"))
    if not finished.processes.is_main:
        return
    redressed = {m: finished.read(m, len(prompts), int(p["batch_size"])) for m in MODELS}

    rows = []
    out_dir, plots_dir = out, plots
    with atomic_path(out_dir, is_dir=True) as out, atomic_path(plots_dir, is_dir=True) as plots:
        for model in MODELS:
            (out / model).mkdir()
            for k, image in enumerate(redressed[model]):
                name = f"{model}/{k:05d}.png"
                Image.fromarray(image).save(out / name)
                source, target = int(sample.source[k]), int(sample.target[k])
                rows.append(
                    {
                        "file": name,
                        "model": model,
                        "split": split.name,
                        "seed": seeds[k],
                        "pair": k,
                        "source_row": source,
                        "target_row": target,
                        "source_index": int(table["index"].iloc[source]),
                        "target_index": int(table["index"].iloc[target]),
                        "source_caption": table["caption"].iloc[source],
                        "target_caption": prompts[k],
                        "realism": bool(sample.realism[k]),
                    }
                )
        pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
        pd.DataFrame({"row": sample.reference}).to_csv(out / "reference.csv", index=False)
        saved = {"masks": inputs.masks} | ({} if inputs.maps is None else {"maps": inputs.maps})
        np.savez_compressed(out / INPUTS, **saved)
        shown = slice(0, int(p["grid_rows"]))
        columns = {m: redressed[m][shown] for m in MODELS}
        if inputs.maps is not None:
            columns = {"target map": colored_maps(inputs.maps[shown])} | columns
        sentence_grid(images[shown], prompts[shown], columns).save(plots / "grid.png")
    finished.clear()
    if finished.reused:
        print(f"redress: {finished.reused} batches read back from the stopped run before")
    print(
        f"redressed {len(prompts)} test images per model; realism: {int(sample.realism.sum())} "
        f"of them against {len(sample.reference)} reference images"
    )


if __name__ == "__main__":
    run_stage(main)
