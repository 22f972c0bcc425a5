"""What the sampling stages (`generate`, `redress`) share: the sampler by name, the device
and weight precision, the batches a stopped run already finished, and contact sheets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from PIL import Image

from fashion.core.params import PARAMS_FILE
from fashion.core.provenance import hash_files
from fashion.core.stage import PipelineError
from fashion.sd.precision import compute_dtype

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


def device_and_dtype(precision: str, param: str = "generate.precision") -> tuple[str, torch.dtype]:
    """The GPU if there is one, else the CPU, with the weight dtype `precision` means there
    (`fashion.sd.precision.compute_dtype`: half precision on the CPU is bf16 where the CPU
    computes it, else fp32)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
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
    Batches keep their composition, so the images equal an uninterrupted run's."""

    def __init__(self, root: Path, fingerprint: dict[str, Any]) -> None:
        self.root = Path(root)
        record, key = self.root / "fingerprint.json", json.dumps(fingerprint, sort_keys=True)
        if not record.is_file() or record.read_text() != key:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
            record.write_text(key)
        self.reused = 0  # batches read back, not sampled

    def batch(self, name: str, start: int, sample: Callable[[], np.ndarray]) -> np.ndarray:
        """uint8 images of the batch of `name` (a model) starting at image `start`: read back
        if an earlier run finished it, else `sample()`d and kept."""
        path = self.root / name / f"{start:07d}.npy"
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
    device: str,
    dtype: torch.dtype,
    inputs: tuple[Path, ...],
    **identity: Any,
) -> FinishedBatches:
    """A sampling stage's `FinishedBatches`: in its `batches_dir` param (a folder that
    outlives the machine, e.g. on Drive), or null: beside `out`. Keyed by the stage's params
    (less `batches_dir`: where batches are kept is not what they are), the device, the dtype,
    the contents of `inputs` (models, subset) and `identity` (prompts, seeds, pairs)."""
    out = Path(out)
    root = Path(params.get("batches_dir") or out.with_name(f"{out.name}.partial"))
    fingerprint = {
        "params": {k: v for k, v in params.items() if k != "batches_dir"},
        "device": device,
        "dtype": str(dtype),
        "files": files_fingerprint(*inputs),
        **identity,
    }
    return FinishedBatches(root, fingerprint)
