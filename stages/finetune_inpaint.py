"""Fine-tune an SD inpainting model to redraw garments, under `accelerate`.

Starts from the base the base_inpaint stage recorded in models/base_inpaint/source.json, at
its pinned commit (`fashion.inpaint.models`: on the demo, the fine-tuned text-to-image SD,
its UNet grown here to 9 channels). Trains on the train split less the validation split
(`n_images`, `epochs` as in `finetune_sd`): each image masked by its garment
(`redress.mask_classes`, dilated by `redress.mask_dilation`) or, with probability
`random_mask_p`, by a random shape, its own caption the text (dropped with
`caption_dropout`). With `redress.version` v2 the UNet also reads each image's own
segmentation at latent size (extra channels, zero at the start; dropped with `map_dropout`),
and the validation redresses read the maps the shape model (models/shape) draws for the
validation prompts. Writes models/inpaint/ (a full pipeline or LoRA weights, and
source.json naming the base), checkpoints/finetune_inpaint/ (resumed as finetune_sd's) and
dvclive/finetune_inpaint/ (curves; validation redress grids: validation images, each given
a validation prompt, input beside output).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler

from fashion.core.params import load_params, section, training_section
from fashion.core.provenance import read_source, training_fingerprint
from fashion.core.stage import run_stage
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_images, read_segmentation, read_table, subset_path
from fashion.inpaint.masks import redress_masks
from fashion.inpaint.models import training_start
from fashion.inpaint.redress import (
    RedressInputs,
    paste_back,
    pipeline_inputs,
    redress_inputs,
    redress_version,
)
from fashion.inpaint.training import InpaintData, InpaintFineTuner
from fashion.inpaint.unet import INPAINT_CHANNELS
from fashion.sd.config import TrainConfig
from fashion.sd.loop import train_and_save, validation_images
from fashion.shape.maps import N_CLASSES, colored_maps
from fashion.shape.model import load_shape_model
from fashion.train.settings import training_rows

STAGE = "finetune_inpaint"
INPAINT_ONLY = ("random_mask_p", "map_dropout", "mask_union_p")


def validation_grid(
    tuner: InpaintFineTuner, prompts: list[str], images: np.ndarray, inputs: RedressInputs
) -> np.ndarray:
    """Validation images redressed with `prompts`, composited at their size: one row of
    (input above output) pairs, uint8 HWC; in v2 the target map above them."""
    cfg, masks = tuner.cfg, inputs.masks
    tuner.sampling_maps = inputs.maps
    try:
        drawn = validation_images(
            tuner,
            prompt=prompts,
            **pipeline_inputs(images, masks),
            height=cfg.resolution,
            width=cfg.resolution,
        )
    finally:
        tuner.sampling_maps = None
    rows = [images, paste_back(images, drawn, masks)]
    if inputs.maps is not None:
        rows.insert(0, colored_maps(inputs.maps))
    return np.concatenate(
        [np.concatenate(column, axis=0) for column in zip(*rows, strict=True)], axis=1
    )


def main(
    subset: Path = Path("data/subset"),
    base_inpaint: Path = Path("models/base_inpaint"),
    shape: Path = Path("models/shape"),
    out: Path = Path("models/inpaint"),
    checkpoints: Path = Path("checkpoints/finetune_inpaint"),
    live_dir: Path = Path("dvclive/finetune_inpaint"),
) -> None:
    params = load_params()
    p, redress = training_section(params, STAGE), section(params, "redress")
    cfg = TrainConfig.from_params({k: v for k, v in p.items() if k not in INPAINT_ONLY}, STAGE)
    shares = {name: float(p[name]) for name in INPAINT_ONLY}
    v2 = redress_version(redress) == "v2"
    # resolved once by base_inpaint: a hub commit since then changes neither the weights
    # nor the checkpoints' fingerprint
    pretrained, revision = read_source(base_inpaint)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed, device_specific=True)  # each process its own noise and timesteps
    train_file = subset_path(subset, "train")
    table = read_table(train_file)
    rows, val_rows = train_validation_rows(table, section(params, "split"))
    rows = training_rows(STAGE, rows, cfg.n_images, cfg.seed)
    segmentation = read_segmentation(train_file, rows)
    data = InpaintData(
        read_images(train_file, rows),
        table["caption"].iloc[rows].tolist(),
        redress_masks(segmentation, redress),
        segmentation if v2 else None,
    )
    pipe = training_start(pretrained, revision, cfg.mode, INPAINT_CHANNELS + v2 * N_CLASSES)
    tuner = InpaintFineTuner(
        pipe,
        DDPMScheduler.from_config(pipe.scheduler.config),  # the training noise schedule
        cfg,
        data,
        accelerator,
        training_fingerprint(pretrained, revision, data.captions, data.images),
        shares["random_mask_p"],
        {k: redress[k] for k in ("mask_classes", "mask_dilation")},
        (pretrained, revision),
        shares["map_dropout"],
        shares["mask_union_p"],
    )
    grid = None
    if cfg.validation_prompts and len(val_rows):  # validation images, a prompt each
        shown = val_rows[: len(cfg.validation_prompts)]
        prompts = cfg.validation_prompts[: len(shown)]
        shape_model = load_shape_model(shape) if v2 else None
        inputs = redress_inputs(read_segmentation(train_file, shown), prompts, redress, shape_model)
        grid = partial(validation_grid, tuner, prompts, read_images(train_file, shown), inputs)
    train_and_save(tuner, out, checkpoints, live_dir, grid)


if __name__ == "__main__":
    run_stage(main)
