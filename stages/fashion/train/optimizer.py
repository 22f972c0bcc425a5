"""The optimiser every training loop of the pipeline uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# Devices with torch's fused AdamW kernel from the project's torch floor (2.4) on.
FUSED_DEVICES = ("cpu", "cuda")


def adamw(
    params: Iterable[Any],
    device: torch.device | str,
    mixed_precision: str = "no",
    **kwargs: Any,
) -> torch.optim.AdamW:
    """`torch.optim.AdamW` over `params` (tensors or param groups), fused where the weights
    train on a device with the fused kernel: one kernel for all parameters instead of a
    dozen small ops per tensor, 15.7 -> 5.2 ms a step for the demo's tiny UNet on 2 CPU
    cores (`bench/optimizer_step.py`); the same update up to float rounding.

    Not under fp16 mixed precision (accelerate's `mixed_precision`): the grad scaler then
    always calls a fused optimiser, which skips an overflowing step inside its kernel, so
    accelerate cannot see the skip and steps the learning-rate schedule anyway."""
    fused = torch.device(device).type in FUSED_DEVICES and mixed_precision != "fp16"
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)
