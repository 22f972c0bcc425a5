"""Fine-tune Stable Diffusion on the train subset (full UNet or LoRA), under `accelerate`.

Reads models/base_sd (source.json) and data/subset/train.h5 less the validation split
(`split` params: whole product folders, left out so generation can be judged on them);
`n_images` and `epochs` set the training images and length (`fashion.train.settings`).
Writes models/sd/ (a full pipeline or LoRA weights), checkpoints/finetune_sd/ (kept across
runs: a re-run resumes from the latest checkpoint of the same fingerprint, see
`fashion.train.settings` for the `steps` / `schedule_steps` rule) and dvclive/finetune_sd/
(loss and images/s per step, mean loss per epoch, validation images every `eval_every`).
Run: accelerate launch stages/finetune_sd.py  (the dvc.yaml command takes its prefix from params)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from accelerate import Accelerator
from accelerate.utils import set_seed

from fashion.core.params import load_params, section, training_section
from fashion.core.provenance import read_source, training_fingerprint
from fashion.core.stage import run_stage
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_images, read_table, subset_path
from fashion.sd.config import TrainConfig
from fashion.sd.loop import train_and_save, validation_images
from fashion.sd.models import load_sd, noise_scheduler
from fashion.sd.training import FineTuner, TrainData
from fashion.train.settings import training_rows


def validation_grid(tuner: FineTuner) -> np.ndarray:
    """One row of images of the validation prompts (fixed seed), as uint8 HWC."""
    cfg = tuner.cfg
    images = validation_images(
        tuner, prompt=cfg.validation_prompts, height=cfg.resolution, width=cfg.resolution
    )
    return (np.concatenate(list(images), axis=1) * 255).round().astype(np.uint8)


def main(
    subset: Path = Path("data/subset"),
    base_sd: Path = Path("models/base_sd"),
    out: Path = Path("models/sd"),
    checkpoints: Path = Path("checkpoints/finetune_sd"),
    live_dir: Path = Path("dvclive/finetune_sd"),
) -> None:
    params = load_params()
    cfg = TrainConfig.from_params(training_section(params, "finetune_sd"))
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed, device_specific=True)  # each process its own noise and timesteps
    pretrained, revision = read_source(base_sd)
    train_file = subset_path(subset, "train")
    table = read_table(train_file)
    rows, _ = train_validation_rows(table, section(params, "split"))
    rows = training_rows("finetune_sd", rows, cfg.n_images, cfg.seed)
    data = TrainData(read_images(train_file, rows), table["caption"].iloc[rows].tolist())
    tuner = FineTuner(
        load_sd(pretrained, revision),
        noise_scheduler(pretrained, revision),
        cfg,
        data,
        accelerator,
        training_fingerprint(pretrained, revision, data.captions, data.images),
    )
    cfg = tuner.cfg  # steps and batch size resolved for these images
    grid = partial(validation_grid, tuner) if cfg.validation_prompts else None
    train_and_save(tuner, out, checkpoints, live_dir, grid)


if __name__ == "__main__":
    run_stage(main)
