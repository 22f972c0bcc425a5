"""The training params both fine-tuning stages share: their names, the `steps` rule, and
which params a checkpoint's fingerprint holds.

Names (the same in `finetune_clip` and `finetune_sd`): `n_images`, `epochs`, `steps`,
`schedule_steps`, `warmup_steps`, `eval_every`, `checkpoint_every`, `keep_checkpoints`,
`checkpoint_mirror`, `batch_size`, `grad_accum`, `lr`, `seed` (and `num_workers` where a
stage has a DataLoader).

The steps rule: `steps` is how many optimiser steps to train; `schedule_steps` (null: equal
to `steps`) is the length the learning-rate schedule spans. The fingerprint holds
`schedule_steps` (resolved), never `steps`. So, with `schedule_steps` set, raising `steps`
resumes from the latest checkpoint and ends on the weights a fresh run with the same params
would reach (same schedule, same step-indexed batches, RNG states restored from the
checkpoint); with `schedule_steps: null` raising `steps` stretches the schedule, which
changes every step's learning rate, so training starts afresh.

The training length: `n_images` (a seeded sample of the training rows, or `all`) and
`epochs` set how many optimiser steps make the run: an epoch is ceil(n_images / (batch x
processes x grad_accum)) steps, its last, partial batch counting as a step, and `steps` (when
not null) caps the total. With `epochs: null` the run is `steps` steps of full batches only
(the rows left over at an epoch's end are dropped). A batch larger than the images is
clamped to them, with a warning. `epochs` is in the fingerprint (it decides whether partial
batches are trained); `steps` is not.

Settings that do not change the trained weights (cadences, worker count, the keep count,
the mirror folder) are not in the fingerprint: changing them resumes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from fashion.core.params import PARAMS_FILE, capped_size
from fashion.core.stage import PipelineError

# Params that change when or how a run trains or logs, not the weights it reaches.
NOT_IN_FINGERPRINT = frozenset(
    {
        "steps",
        "num_workers",
        "eval_every",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "checkpoint_mirror",
    }
)


def training_rows(
    stage: str, rows: np.ndarray, n_images: int | str | None, seed: int
) -> np.ndarray:
    """`n_images` of the training `rows`, a fixed-seed sample in ascending order, or all of
    them for `all` (a larger number than there are rows takes all, with a warning)."""
    if n_images in (None, "all"):
        return rows
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise PipelineError(
            f"{PARAMS_FILE}: {stage}.n_images must be a positive integer or all, got {n_images!r}"
        )
    holder = f"the training split holds {len(rows)} images"
    n_images = capped_size(n_images, len(rows), f"{stage}.n_images", holder)
    if n_images == "all" or n_images == len(rows):
        return rows
    return np.sort(np.random.default_rng([seed, 1]).choice(rows, n_images, replace=False))


def fit_batch_size(stage: str, batch_size: int, n: int, processes: int, grad_accum: int) -> int:
    """`batch_size`, or the largest per-process batch one optimiser step of `n` images can
    fill (at least 1) when `batch_size` x processes x grad_accum exceeds `n`, with a warning."""
    fitted = max(1, n // (processes * grad_accum))
    if batch_size <= fitted:
        return batch_size
    warnings.warn(
        f"{PARAMS_FILE}: {stage}.batch_size={batch_size} x {processes} process(es) x "
        f"grad_accum {grad_accum} exceeds the {n} training images: batch_size {fitted}",
        stacklevel=2,
    )
    return fitted


def training_steps(stage: str, steps: int | None, epochs: int | None, steps_per_epoch: int) -> int:
    """The optimiser steps to run: `epochs` x `steps_per_epoch`, capped by `steps`; or
    `steps` alone when `epochs` is null."""
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise PipelineError(
                f"{PARAMS_FILE}: {stage}.{name} must be a positive integer or null, got {value!r}"
            )
    if epochs is None:
        if steps is None:
            raise PipelineError(f"{PARAMS_FILE}: {stage}: set steps, epochs or both")
        return int(steps)
    total = int(epochs) * steps_per_epoch
    return total if steps is None else min(int(steps), total)


def schedule_steps(stage: str, steps: int, schedule: int | None) -> int:
    """The length of the learning-rate schedule: `schedule_steps`, or `steps` when null."""
    if schedule is None:
        return steps
    if int(schedule) < steps:
        raise PipelineError(
            f"{PARAMS_FILE}: {stage}.schedule_steps ({schedule}) must be at least "
            f"{stage}.steps ({steps}), or null"
        )
    return int(schedule)


def fingerprint(
    params: dict[str, Any],
    schedule: int,
    source: str,
    num_processes: int,
    mixed_precision: str = "no",
    also_ignored: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the params that change the result
    (`schedule_steps` resolved), the base model and data (`source`, from
    `training_fingerprint`), the process count (it sets the global batch) and accelerate's
    mixed precision: an fp16 run resumes a grad scaler's state, which a bf16 or fp32
    checkpoint lacks (accelerate would stop on the missing file). "no" is left out, so
    checkpoints written before the key existed still resume."""
    ignored = NOT_IN_FINGERPRINT | set(also_ignored)
    kept = {k: v for k, v in params.items() if k not in ignored}
    precision = {} if mixed_precision == "no" else {"mixed_precision": mixed_precision}
    return {
        "params": {**kept, "schedule_steps": schedule},
        "source": source,
        "num_processes": num_processes,
        **precision,
        **extra,
    }
