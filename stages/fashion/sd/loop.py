"""The training loop of the SD fine-tuning stages (`finetune_sd`, `finetune_inpaint`):
resume from the latest matching checkpoint, one optimiser step at a time with dvclive
curves (loss and images/s per step, mean loss per epoch), validation images every
`eval_every` steps and at the end, checkpoints, and the saved model."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fashion.core.atomic import atomic_path
from fashion.sd.training import FineTuner
from fashion.train.checkpoints import Checkpoints
from fashion.train.live import log_step, open_live


def validation_images(tuner: FineTuner, **call: Any) -> np.ndarray:
    """Float (b, H, W, 3) images in [0, 1] of the tuner's current weights: its inference
    pipeline called with `call` and `validation_denoising_steps` steps, seeded by `seed`."""
    cfg = tuner.cfg
    pipe = tuner.inference_pipeline(use_ema=False)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    # under mixed precision the VAE and (LoRA) UNet hold fp16/bf16 weights while the
    # pipeline's latents are fp32: autocast runs each op in the precision training uses;
    # without it, in the VAE's (`vae_precision`).
    # The forked RNG: validating (or not) leaves training's random draws as they were.
    device = tuner.accelerator.device
    autocast = (
        tuner.accelerator.autocast()
        if tuner.accelerator.mixed_precision != "no"
        else torch.autocast(device.type, tuner.vae_dtype, tuner.vae_dtype != torch.float32)
    )
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), autocast, torch.random.fork_rng(devices):
        images = pipe(
            **call,
            num_inference_steps=cfg.validation_denoising_steps,
            generator=generator,
            output_type="np",
        ).images
    tuner.unet.train()
    tuner.text_encoder.train(cfg.train_text_encoder)
    return images


def train_and_save(
    tuner: FineTuner,
    out: Path,
    checkpoints: Path,
    live_dir: Path,
    validation_grid: Callable[[], np.ndarray] | None,
) -> None:
    """Train `tuner` to its `cfg.steps` and save it to `out` (atomically, main process).

    `validation_grid`: uint8 HWC images on the current weights, logged every `eval_every`
    steps and at the last one (None: no validation images)."""
    cfg, accelerator = tuner.cfg, tuner.accelerator
    saved = Checkpoints(
        checkpoints, tuner.fingerprint(), cfg.keep_checkpoints, cfg.checkpoint_mirror
    )
    start = saved.resume(accelerator, cfg.steps)
    accelerator.print(
        f"{cfg.stage}: {accelerator.num_processes} process(es), {len(tuner.data.images)} "
        f"training images, steps {start + 1}..{cfg.steps}"
        + (f" (resumed from the step {start} checkpoint)" if start else "")
    )
    main_process = accelerator.is_main_process
    live = open_live(live_dir, resume=start > 0, main_process=main_process)
    if live is not None:
        live.log_params({"world_size": accelerator.num_processes, "resumed_from": start})
        # declared as DVC plots: present (empty) without validation images too
        (live_dir / "plots/images").mkdir(parents=True, exist_ok=True)
    # step losses are already means over the processes: the epoch's is a plain mean (a
    # torchmetrics MeanMetric costs 0.9 s of imports, bench/import_time.py, and would drop
    # a NaN loss with a warning: a diverged run shows as NaN here, as in train/loss)
    epoch_losses: list[float] = []
    for step in tqdm(
        range(start, cfg.steps),
        desc=cfg.stage,
        disable=not main_process,
        initial=start,
        total=cfg.steps,
        mininterval=5,
    ):
        began = time.perf_counter()
        loss = tuner.train_step(step)  # a float: the GPU has finished the step
        seconds = time.perf_counter() - began
        epoch_losses.append(loss)
        done = step + 1
        # training throughput (all processes), the measured rate behind time estimates
        metrics = {"train/loss": loss, "perf/images_per_s": tuner.global_batch / seconds}
        epoch_ends = tuner.epoch_of(done) != tuner.epoch_of(step)
        if epoch_ends or done == cfg.steps:  # the mean over the epoch's steps, not its last batch
            metrics["train/epoch_loss"] = statistics.fmean(epoch_losses)
        if epoch_ends:
            epoch_losses.clear()
        if validation_grid is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            grid = validation_grid()
            if live is not None:
                live.log_image(f"validation/step-{done:06d}.png", grid)
            accelerator.wait_for_everyone()
        log_step(live, done, metrics)
        # the last step too: a later run with more `steps` goes on from there
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            saved.save(accelerator, done)
    accelerator.wait_for_everyone()
    if main_process:
        with atomic_path(out, is_dir=True) as tmp:
            tuner.save(tmp)
        live.end()
    accelerator.end_training()
