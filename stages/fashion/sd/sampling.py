"""What the sampling stages (`generate`, `redress`) share: the sampler by name, the device
and weight precision, and contact sheets of images."""

from __future__ import annotations

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from PIL import Image

from fashion.core.params import PARAMS_FILE
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
