"""What the sampling stages (`generate`, `redress`) share: the sampler by name, the device
and weight precision, the batches a stopped run already finished (also how the stage's
processes share the batches out), and contact sheets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from PIL import Image

from fashion.core.params import PARAMS_FILE
from fashion.core.processes import Processes
from fashion.core.provenance import hash_files
from fashion.core.stage import PipelineError
from fashion.sd.precision import compute_dtype

PipelineT = TypeVar("PipelineT", bound=DiffusionPipeline)

SCHEDULERS = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}


def check_scheduler(name: object, param: str) -> type:
    """The scheduler class of a `scheduler` param, or a one-line error naming it."""
    if name not in SCHEDULERS:
        raise PipelineError(f"{PARAMS_FILE}: {param} must be one of {sorted(SCHEDULERS)}")
    return SCHEDULERS[name]


def ready_to_sample(pipe: PipelineT, scheduler: type) -> PipelineT:
    """`pipe` as every sampler here runs it (the sampling stages and the app): `scheduler`
    (`check_scheduler`'s class) built from the pipeline's own scheduler config, no progress
    bar."""
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def device_and_dtype(
    precision: str, param: str = "generate.precision"
) -> tuple[torch.device, torch.dtype]:
    """This process's device (its GPU if there is one, else the CPU) with the weight dtype
    `precision` means there (`fashion.sd.precision.compute_dtype`: half precision on the CPU
    is bf16 where the CPU computes it, else fp32)."""
    device = Processes().device
    return device, compute_dtype(precision, device, param)


def grid(images: list[Image.Image], columns: int) -> Image.Image:
    """The images on a white sheet, `columns` a row."""
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    return sheet


class FinishedBatches:
    """The batches a sampling stage has finished, kept on disk in `root` until the stage
    ends, so a run stopped midway (a crash, a lost Colab VM) redoes only the rest: hours of
    sampling on the real profile. `root` is keyed by `fingerprint` (what decides the
    images: params, prompts, seeds, the models' files); another fingerprint clears it.
    Batches keep their composition, so the images equal an uninterrupted run's.

    Under several processes (one folder that all of them see) the main process alone checks
    the fingerprint and clears the folder (the others pass None and wait for it); `todo`
    gives each process its share of the batches still to sample, and once every process is
    done (`wait`), the main process reads them all back (`read`)."""

    def __init__(
        self, root: Path, fingerprint: dict[str, Any] | None, processes: Processes | None = None
    ) -> None:
        self.root = Path(root)
        self.processes = processes or Processes()
        if self.processes.is_main:
            record, key = self.root / "fingerprint.json", json.dumps(fingerprint, sort_keys=True)
            if not record.is_file() or record.read_text() != key:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root.mkdir(parents=True)
                record.write_text(key)
        self.processes.wait()
        # what a stopped run left, as every process sees it before any samples more
        self.kept = set(self.root.glob("*/*.npy"))
        self.processes.wait()
        self.reused = 0  # batches read back, not sampled

    def path(self, name: str, start: int) -> Path:
        return self.root / name / f"{start:07d}.npy"

    def todo(self, name: str, n: int, batch_size: int) -> list[int]:
        """Starts of this process's share of the batches of `name` (of `n` images) that no
        earlier run finished: round-robin over those, so a resumed run splits evenly."""
        starts = range(0, n, batch_size)
        left = [s for s in starts if self.path(name, s) not in self.kept]
        self.reused += len(starts) - len(left)
        return self.processes.share(left)

    def batch(self, name: str, start: int, sample: Callable[[], np.ndarray]) -> np.ndarray:
        """uint8 images of the batch of `name` (a model) starting at image `start`: read back
        if an earlier run finished it, else `sample()`d and kept."""
        path = self.path(name, start)
        if path.is_file():
            self.reused += 1
            return np.load(path)
        images = np.ascontiguousarray(sample(), dtype=np.uint8)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        with open(partial, "wb") as f:
            np.save(f, images)
        os.replace(partial, path)  # a batch is there whole or not at all
        return images

    def wait(self) -> None:
        """Until every process has sampled its share."""
        self.processes.wait()

    def read(self, name: str, n: int, batch_size: int) -> np.ndarray:
        """Every batch of `name` (of `n` images), in order: uint8 (n, H, W, 3)."""
        return np.concatenate([np.load(self.path(name, s)) for s in range(0, n, batch_size)])

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def files_fingerprint(*paths: Path) -> str:
    """A digest of the contents of the files at or under `paths`, named relative to them:
    the same models and subset give the same digest on another machine (a Colab VM that
    pulled them again), so finished batches kept there still count. SHA-256 runs at ~1.1
    GB/s on one core here: seconds for a full UNet, next to hours of sampling."""
    digest = hashlib.sha256()
    for k, root in enumerate(paths):
        hash_files(digest, Path(root), prefix=f"{k}:", end="\n")
    return digest.hexdigest()


def finished_batches(
    out: Path,
    params: dict[str, Any],
    device: torch.device | str,
    dtype: torch.dtype,
    inputs: tuple[Path, ...],
    **identity: Any,
) -> FinishedBatches:
    """A sampling stage's `FinishedBatches`: in its `batches_dir` param (a folder that
    outlives the machine, e.g. on Drive), or null: beside `out`. Keyed by the stage's params
    (less `batches_dir`: where batches are kept is not what they are), the device, the dtype,
    the contents of `inputs` (models, subset) and `identity` (prompts, seeds, pairs); not
    by the process count or which GPU (the batches are the same), so a run stopped under
    one launch resumes under another. Only the main process reads the inputs for it."""
    out = Path(out)
    root = Path(params.get("batches_dir") or out.with_name(f"{out.name}.partial"))
    processes = Processes()
    fingerprint = None
    if processes.is_main:
        fingerprint = {
            "params": {k: v for k, v in params.items() if k != "batches_dir"},
            "device": torch.device(device).type,  # "cuda" or "cpu", on every process
            "dtype": str(dtype),
            "files": files_fingerprint(*inputs),
            **identity,
        }
    return FinishedBatches(root, fingerprint, processes)
