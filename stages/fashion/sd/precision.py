"""One precision vocabulary for every `*precision` param: fp32 | bf16 | fp16 | auto.

A value means the same dtype on every device, with one CPU fallback:
- fp32, bf16, fp16: that dtype on a GPU.
- auto: the training's mixed-precision dtype where a stage trains under one (the frozen VAE
  of the SD fine-tuners, as diffusers' recipe), else fp16 on a GPU and bf16 on a CPU.
- On a CPU, half precision runs only where the CPU computes it: bf16 with AVX512-BF16 or
  AMX, which run the tiny VAE's convolutions 2-3x and the UNet's sampling 1.3x faster than
  fp32. Without them PyTorch emulates bf16 at about 15x the fp32 time, and CPU fp16
  kernels are slow or missing, so there bf16, fp16 and auto run as fp32 (bench/cpu_bf16.py).
The UNet's and CLIP's training steps gain nothing from bf16 on the CPU; they stay fp32.
"""

from __future__ import annotations

import os

import torch

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX), and oneDNN may use
    it: `ONEDNN_MAX_CPU_ISA` (e.g. AVX2) caps the instructions its kernels take."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL"))
    cap = cap.upper()
    with_bf16 = ("BF16", "FP16", "AMX", "AVX10")  # the ISAs from AVX512_CORE_BF16 up
    if cap not in ("ALL", "DEFAULT") and not any(k in cap for k in with_bf16):
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def compute_dtype(
    precision: str, device: torch.device | str, param: str, mixed: torch.dtype | None = None
) -> torch.dtype:
    """The dtype a `precision` param means on `device` (the module's docstring). `mixed`: the
    mixed-precision dtype the stage trains under, if any (what auto means then).
    `param` names the param in the error for an unknown value."""
    if precision != "auto" and precision not in PRECISIONS:
        raise PipelineError(
            f"{PARAMS_FILE}: {param}: must be one of {[*PRECISIONS, 'auto']}, got {precision!r}"
        )
    on_cpu = torch.device(device).type == "cpu"
    if precision == "auto":
        if mixed is not None and mixed != torch.float32:
            return mixed  # what accelerate already runs the training in
        precision = "bf16" if on_cpu else "fp16"
    dtype = PRECISIONS[precision]
    if not on_cpu or dtype == torch.float32:
        return dtype
    return torch.bfloat16 if dtype == torch.bfloat16 and cpu_has_bf16() else torch.float32
