"""The training params both fine-tuning stages share: their names, the `steps` rule, and
which params a checkpoint's fingerprint holds.

Names (the same in `finetune_clip` and `finetune_sd`): `steps`, `schedule_steps`,
`warmup_steps`, `eval_every`, `checkpoint_every`, `keep_checkpoints`, `checkpoint_mirror`,
`batch_size`, `grad_accum`, `lr`, `seed` (and `num_workers` where a stage has a DataLoader).

The steps rule: `steps` is how many optimiser steps to train; `schedule_steps` (null: equal
to `steps`) is the length the learning-rate schedule spans. The fingerprint holds
`schedule_steps` (resolved), never `steps`. So, with `schedule_steps` set, raising `steps`
resumes from the latest checkpoint and ends on the weights a fresh run with the same params
would reach (same schedule, same step-indexed batches, RNG states restored from the
checkpoint); with `schedule_steps: null` raising `steps` stretches the schedule, which
changes every step's learning rate, so training starts afresh.

Settings that do not change the trained weights (cadences, worker count, the keep count,
the mirror folder) are not in the fingerprint: changing them resumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError

# Old names of the shared params (SD's were diffusers' script's) -> their name now.
RENAMED = {
    "max_steps": "steps",
    "lr_warmup_steps": "warmup_steps",
    "validation_every": "eval_every",
    "checkpoints_total_limit": "keep_checkpoints",
}
# Params that moved out of the training stages -> where they are now.
MOVED = {"val_size": "split.validation_images"}
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


def check_names(stage: str, params: dict[str, Any]) -> None:
    """A one-line error for a param under its old name."""
    for old, new in RENAMED.items():
        if old in params:
            raise PipelineError(f"{PARAMS_FILE}: {stage}.{old} is now {stage}.{new}")
    for old, new in MOVED.items():
        if old in params:
            raise PipelineError(f"{PARAMS_FILE}: {stage}.{old} is now {new}")


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
    also_ignored: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the params that change the result
    (`schedule_steps` resolved), the base model and data (`source`, from
    `training_fingerprint`) and the process count (it sets the global batch)."""
    ignored = NOT_IN_FINGERPRINT | set(also_ignored)
    kept = {k: v for k, v in params.items() if k not in ignored}
    return {
        "params": {**kept, "schedule_steps": schedule},
        "source": source,
        "num_processes": num_processes,
        **extra,
    }
