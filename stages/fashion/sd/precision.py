"""Half precision where it is fast: on a GPU as asked, on the CPU only where the CPU computes
bf16 itself.

A CPU with AVX512-BF16 or AMX runs the tiny VAE's convolutions 2-3x faster in bf16 than in
fp32 (encode, decode and its training step) and the UNet's sampling 1.3x faster. Without
those instructions PyTorch emulates bf16 at about 15x the fp32 time, and CPU fp16 kernels
are slow or missing: there half precision runs as fp32 (bench/cpu_bf16.py measures both).
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


def compute_dtype(precision: str, device: torch.device | str, param: str) -> torch.dtype:
    """The dtype a `precision` param (fp16 | bf16 | fp32) means on `device`: as named on a
    GPU; on the CPU, fp16 and bf16 both mean bf16 where the CPU has it (`cpu_has_bf16`),
    else fp32. `param` names the param in the error for an unknown value."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise PipelineError(
            f"{PARAMS_FILE}: {param} must be one of {list(PRECISIONS)}, got {precision!r}"
        )
    dtype = PRECISIONS[precision]
    if torch.device(device).type != "cpu" or dtype == torch.float32:
        return dtype
    return torch.bfloat16 if cpu_has_bf16() else torch.float32
