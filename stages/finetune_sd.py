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

import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torchmetrics.aggregation import MeanMetric
from tqdm import tqdm

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.provenance import read_source, training_fingerprint
from fashion.core.stage import run_stage
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_images, read_table, subset_path
from fashion.sd.config import TrainConfig
from fashion.sd.models import load_sd, noise_scheduler
from fashion.sd.training import FineTuner, TrainData
from fashion.train.checkpoints import Checkpoints
from fashion.train.live import log_step, open_live
from fashion.train.settings import training_rows


def validation_grid(tuner: FineTuner, cfg: TrainConfig) -> np.ndarray:
    """One row of validation images (fixed seed), as uint8 HWC."""
    pipe = tuner.inference_pipeline(use_ema=False)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    # under mixed precision the VAE and (LoRA) UNet hold fp16/bf16 weights while the
    # pipeline's latents are fp32: autocast runs each op in the precision training uses.
    # The forked RNG: validating (or not) leaves training's random draws as they were.
    devices = [tuner.accelerator.device] if tuner.accelerator.device.type == "cuda" else []
    with torch.no_grad(), tuner.accelerator.autocast(), torch.random.fork_rng(devices):
        images = pipe(
            cfg.validation_prompts,
            num_inference_steps=cfg.validation_steps,
            height=cfg.resolution,
            width=cfg.resolution,
            generator=generator,
            output_type="np",
        ).images
    tuner.unet.train()
    tuner.text_encoder.train(cfg.train_text_encoder)
    return (np.concatenate(list(images), axis=1) * 255).round().astype(np.uint8)


def main(
    subset: Path = Path("data/subset"),
    base_sd: Path = Path("models/base_sd"),
    out: Path = Path("models/sd"),
    checkpoints: Path = Path("checkpoints/finetune_sd"),
    live_dir: Path = Path("dvclive/finetune_sd"),
) -> None:
    params = load_params()
    cfg = TrainConfig.from_params(section(params, "finetune_sd"))
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed)
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
    checkpoints = Checkpoints(
        checkpoints, tuner.fingerprint(), cfg.keep_checkpoints, cfg.checkpoint_mirror
    )
    start = checkpoints.resume(accelerator, cfg.steps)
    accelerator.print(
        f"finetune_sd: {accelerator.num_processes} process(es), steps {start + 1}..{cfg.steps}"
        + (f" (resumed from the step {start} checkpoint)" if start else "")
    )
    main_process = accelerator.is_main_process
    live = open_live(live_dir, resume=start > 0, main_process=main_process)
    if live is not None:
        live.log_params({"world_size": accelerator.num_processes, "resumed_from": start})
        # declared as DVC plots: present (empty) without validation prompts too
        (live_dir / "plots/images").mkdir(parents=True, exist_ok=True)
    epoch_loss = MeanMetric(sync_on_compute=False)  # step losses are already process means
    for step in tqdm(
        range(start, cfg.steps),
        desc="finetune_sd",
        disable=not main_process,
        initial=start,
        total=cfg.steps,
        mininterval=5,
    ):
        began = time.perf_counter()
        loss = tuner.train_step(step)  # a float: the GPU has finished the step
        seconds = time.perf_counter() - began
        epoch_loss.update(loss)
        done = step + 1
        # training throughput (all processes), the measured rate behind time estimates
        metrics = {"train/loss": loss, "perf/images_per_s": tuner.global_batch / seconds}
        epoch_ends = tuner.epoch_of(done) != tuner.epoch_of(step)
        if epoch_ends or done == cfg.steps:  # the mean over the epoch's steps, not its last batch
            metrics["train/epoch_loss"] = float(epoch_loss.compute())
        if epoch_ends:
            epoch_loss.reset()
        if cfg.validation_prompts and (done % cfg.eval_every == 0 or done == cfg.steps):
            grid = validation_grid(tuner, cfg)
            if live is not None:
                live.log_image(f"validation/step-{done:06d}.png", grid)
            accelerator.wait_for_everyone()
        log_step(live, done, metrics)
        # the last step too: a later run with more `steps` goes on from there
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            checkpoints.save(accelerator, done)
    accelerator.wait_for_everyone()
    if main_process:
        with atomic_path(out, is_dir=True) as tmp:
            tuner.save(tmp)
        live.end()
    accelerator.end_training()


if __name__ == "__main__":
    run_stage(main)
