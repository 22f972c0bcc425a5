"""Training batches indexed by micro-step: batch k is a pure function of (seed, k).

A resumed run therefore sees exactly the batches an uninterrupted run would, whatever
step it resumes from, and every process takes its own slice of each global batch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np
import torch

from fashion.core.stage import PipelineError

T = TypeVar("T")


class StepBatches:
    """Global batches by micro-step: epoch e is a permutation of the rows seeded by (seed, e),
    cut into batches of `batch_size * world_size`; process `rank` takes its contiguous slice.

    An epoch holds a whole number of optimiser steps (`grad_accum` micro-batches each). The
    rows left over after the last full step are dropped (a different set in every epoch),
    or, with `keep_remainder` (training by `epochs`), make one more, smaller step: its rows
    are split into equal micro-batches over its `grad_accum` x processes parts, topped up
    from the epoch's first rows to a multiple of the parts (processes gather equal row
    counts), as `accelerate`'s even batches do. On one process without accumulation that
    last step is a plain partial batch, as a `DataLoader` without `drop_last` gives.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        grad_accum: int = 1,
        keep_remainder: bool = False,
    ) -> None:
        self.n, self.batch_size, self.world_size, self.rank, self.seed = (
            n, batch_size, world_size, rank, seed,
        )  # fmt: skip
        self.grad_accum = grad_accum
        self.global_batch = batch_size * world_size
        step_rows = self.global_batch * grad_accum
        self.full_steps = n // step_rows
        partial_step = keep_remainder and n % step_rows > 0
        self.steps_per_epoch = self.full_steps + int(partial_step)
        if self.steps_per_epoch == 0:
            raise PipelineError(
                f"{n} training images, fewer than one global batch ({batch_size} x "
                f"{world_size} processes x {grad_accum} accumulated)"
            )
        self.per_epoch = self.steps_per_epoch * grad_accum  # micro-batches
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def rows(self, micro_step: int) -> np.ndarray:
        """This process's rows of global micro-batch `micro_step` (counted from 0)."""
        epoch, i = divmod(micro_step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        full_micro = self.full_steps * self.grad_accum
        if i < full_micro:
            start = i * self.global_batch + self.rank * self.batch_size
            return self._perm[start : start + self.batch_size]
        # the epoch's last, partial step
        parts = self.grad_accum * self.world_size
        tail = self._perm[full_micro * self.global_batch :]
        size = -(-len(tail) // parts)
        tail = np.concatenate([tail, np.resize(self._perm, size * parts - len(tail))])
        start = ((i - full_micro) * self.world_size + self.rank) * size
        return tail[start : start + size]

    def epoch_of(self, step: int) -> int:
        """The epoch optimiser step `step` (counted from 0) belongs to."""
        return step // self.steps_per_epoch


class StepDataset(torch.utils.data.Dataset, Generic[T]):
    """Item k is `build(rows of micro-batch k)`: for a `DataLoader` with `batch_size=None`
    and a `sampler` over the micro-steps to run, whose workers build batches ahead of the
    training loop. `build` must be picklable (a module-level function or a `partial`)."""

    def __init__(self, batches: StepBatches, build: Callable[[np.ndarray], T]) -> None:
        self.batches, self.build = batches, build

    def __getitem__(self, micro_step: int) -> T:
        return self.build(self.batches.rows(micro_step))


def worker_start_method(num_workers: int) -> str | None:
    """How a `DataLoader`'s workers start: forked on Linux, so they share the parent's
    training images (3.3 GB on the real benchmark) instead of each unpickling a copy, which
    Python 3.14's default there (forkserver) would do. Elsewhere (and without workers) the
    platform's default."""
    if num_workers > 0 and sys.platform == "linux":
        return "fork"
    return None
