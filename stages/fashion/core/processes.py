"""The processes a stage was started with (`accelerate.launch`: one, or one per GPU) and the
work each takes: whole batches, round-robin over batch indices.

Each image's result depends only on its own batch (its own seed, a network's forward pass on
that batch), so N processes that each compute whole batches of the one-process composition
give the one-process results, and a stage launched with `python` is one process doing all.
Results come together on every process (`map_batches`, for metrics) or through files (the
sampling stages' finished batches); only the main process writes a stage's outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env

T = TypeVar("T")
R = TypeVar("R")


class Processes:
    """This process among the stage's processes: its rank, device and share of the work."""

    def __init__(self) -> None:
        # One state per process, shared by every instance. Without a GPU the processes meet
        # over the CPU backend (accelerate would leave each one alone, each a "main" one).
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
        self.state = PartialState(cpu=cpu)
        self.rank, self.world = self.state.process_index, self.state.num_processes
        launched = int(os.environ.get("WORLD_SIZE", 1))
        if self.world != launched:
            raise RuntimeError(f"launched as {launched} processes, but this one sees {self.world}")
        self.is_main = self.state.is_main_process
        # "cpu", not the "cpu:0" of a CPU launch: moving weights there copies them, and
        # copies elsewhere in memory can round differently (the CPU's math library)
        device = self.state.device
        self.device = torch.device("cpu") if device.type == "cpu" else device
        self.done = self.total = 0  # batches this process took, of all shared out

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's items: every `world`-th, from its rank on."""
        mine = list(items[self.rank :: self.world])
        self.done, self.total = self.done + len(mine), self.total + len(items)
        return mine

    def map_batches(self, fn: Callable[[slice], R], n: int, batch_size: int) -> list[R]:
        """`fn` of every whole batch of `n` items (a slice of them), in batch order, on every
        process: each computes its share, then all gather. Every process must call this in
        the same order (it is a collective)."""
        starts = range(0, n, batch_size)
        mine = {s: fn(slice(s, s + batch_size)) for s in self.share(starts)}
        if self.world > 1:
            mine = {s: r for part in gather_object([mine]) for s, r in part.items()}
        return [mine[s] for s in starts]

    def wait(self) -> None:
        """Until every process gets here."""
        self.state.wait_for_everyone()

    def summary(self, stage: str) -> str:
        return (
            f"{stage}: process {self.rank} of {self.world} computed {self.done} of "
            f"{self.total} batches"
        )
