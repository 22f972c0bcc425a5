"""Training the shape model on the shared toolkit: step-indexed batches (a resumed run sees
the batches an uninterrupted one would), checkpoints keyed by a fingerprint, dvclive curves
and validation maps as images.

Each training image teaches its own map: its coarse body map and its own caption in, its
`b_` out, cross-entropy per pixel. Flipped left-right at random (map and coarse map alike).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm import tqdm

from fashion.shape.model import ShapeNet
from fashion.train.batches import StepBatches
from fashion.train.checkpoints import Checkpoints
from fashion.train.live import log_step, open_live
from fashion.train.optimizer import adamw


@dataclass
class ShapeData:
    coarse: torch.Tensor  # float (N, 4, c, c)
    ids: torch.Tensor  # int64 (N, max_words)
    maps: torch.Tensor  # int64 (N, s, s): each image's own segmentation (at the loss's size)


@dataclass
class ShapeRun:
    """What one training run does: its length, schedule and cadences."""

    steps: int
    schedule: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    random_flip: bool
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int
    checkpoint_mirror: str | None
    seed: int
    dtype: torch.dtype = torch.float32  # autocast's, where accelerate runs no mixed precision
    # share of training maps whose coarse body is one cell wider: its outline then no longer
    # tells a flared dress from trousers, and the sentence must
    coarse_jitter: float = 0.0


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup: int, schedule: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup over `warmup` steps, then cosine decay to 0 at step `schedule` (torch's
    schedulers: `transformers`' equivalent costs 3 s of imports in a 1-minute stage)."""
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(schedule - warmup, 1))
    if not warmup:
        return decay
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, 1 / warmup, 1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, decay], milestones=[warmup])


def autocast(accelerator: Accelerator, dtype: torch.dtype) -> Any:
    """accelerate's autocast under its mixed precision; else torch's in `dtype` (bf16 on a
    CPU that computes it: 1.34x a step here, bench/reshape_step.py), or none for fp32."""
    if accelerator.mixed_precision != "no":
        return accelerator.autocast()
    device = accelerator.device.type
    return torch.autocast(device, dtype, enabled=dtype != torch.float32)


def widened(coarse: torch.Tensor) -> torch.Tensor:
    """One-hot coarse maps (N, 4, c, c) with the body one cell wider on each side, over
    background only (hair and face stay)."""
    body = coarse[:, 3:4]
    grown = F.max_pool2d(body, (1, 3), stride=1, padding=(0, 1))
    gained = (grown > body) & (coarse[:, 0:1] > 0)
    out = coarse.clone()
    out[:, 3:4][gained] = 1.0
    out[:, 0:1][gained] = 0.0
    return out


def batch_loss(
    model: torch.nn.Module,
    data: ShapeData,
    rows: np.ndarray,
    flip: np.ndarray,
    widen: np.ndarray | None = None,
) -> torch.Tensor:
    """Mean per-pixel cross-entropy of the rows' maps (those in `flip` mirrored; those in
    `widen` given a body one cell wider: `ShapeRun.coarse_jitter`)."""
    index = torch.as_tensor(rows)
    coarse, maps = data.coarse[index].clone(), data.maps[index].clone()
    if flip.any():
        f = torch.as_tensor(flip)
        coarse[f], maps[f] = coarse[f].flip(-1), maps[f].flip(-1)
    if widen is not None and widen.any():
        w = torch.as_tensor(widen)
        coarse[w] = widened(coarse[w])
    device = next(model.parameters()).device
    logits = model(coarse.to(device), data.ids[index].to(device), maps.shape[-1])
    return F.cross_entropy(logits.float(), maps.to(device))


def train_shape(
    model: ShapeNet,
    data: ShapeData,
    run: ShapeRun,
    accelerator: Accelerator,
    fingerprint: dict[str, Any],
    checkpoints: Path,
    live_dir: Path,
    validate: Callable[[ShapeNet], tuple[dict[str, float], np.ndarray]] | None = None,
) -> ShapeNet:
    """Train `model` for `run.steps` optimiser steps; the trained model, unwrapped.

    `validate(model)`: validation metrics and a uint8 HWC image of maps, logged every
    `eval_every` steps and at the last one."""
    batches = StepBatches(
        len(data.ids), run.batch_size, accelerator.num_processes, accelerator.process_index,
        run.seed,
    )  # fmt: skip
    optimizer = adamw(
        model.parameters(),
        accelerator.device,
        accelerator.mixed_precision,
        lr=run.lr,
        weight_decay=run.weight_decay,
    )
    scheduler = warmup_cosine(optimizer, run.warmup_steps, run.schedule)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    saved = Checkpoints(checkpoints, fingerprint, run.keep_checkpoints, run.checkpoint_mirror)
    start = saved.resume(accelerator, run.steps)
    accelerator.print(
        f"reshape: {accelerator.num_processes} process(es), {len(data.ids)} training maps, "
        f"steps {start + 1}..{run.steps}" + (f" (resumed at step {start})" if start else "")
    )
    live = open_live(live_dir, resume=start > 0, main_process=accelerator.is_main_process)
    if live is not None:
        (live_dir / "plots/images").mkdir(parents=True, exist_ok=True)
    unwrapped = accelerator.unwrap_model(model)
    model.train()
    for step in tqdm(
        range(start, run.steps),
        desc="reshape",
        disable=live is None,
        initial=start,
        total=run.steps,
        mininterval=5,
    ):
        began = time.perf_counter()
        rows = batches.rows(step)
        # the flips of step k are a function of (seed, k), as its rows are: resuming is exact
        draws = np.random.default_rng([run.seed, 7, step]).random((2, len(rows)))
        flip = (draws[0] < 0.5) & run.random_flip
        with autocast(accelerator, run.dtype):
            loss = batch_loss(model, data, rows, flip, draws[1] < run.coarse_jitter)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        done = step + 1
        metrics = {
            "train/loss": accelerator.reduce(loss.detach(), "mean").item(),
            "perf/maps_per_s": batches.global_batch / (time.perf_counter() - began),
        }
        if validate is not None and (done % run.eval_every == 0 or done == run.steps):
            with autocast(accelerator, run.dtype):
                scores, image = validate(unwrapped)
            metrics |= scores
            if live is not None:
                live.log_image(f"validation/step-{done:06d}.png", image)
        log_step(live, done, metrics)
        if done % run.checkpoint_every == 0 or done == run.steps:
            saved.save(accelerator, done)
    accelerator.wait_for_everyone()
    if live is not None:
        live.end()
    accelerator.end_training()
    return unwrapped
