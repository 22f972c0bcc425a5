"""What a number was made with: library versions, the device, and the CPU's instruction set.

The same code and seed give byte-identical metrics on one machine, but another CPU or another
torch moves them (docs/evaluation.md, "Uncertainty"), so every metrics file records this
block beside its numbers.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate")
# the CPU flags that choose torch's and oneDNN's kernels (and so the rounding): vector width,
# bf16 and int8 dot products, AMX tiles
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
    "amx_bf16",
)  # fmt: skip
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The CPU's model name and which of `ISA_FLAGS` it has (Linux; elsewhere the platform's
    processor string and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
            if flags and model:
                break
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The block recorded beside the metrics: versions, device, CPU and its ISA."""
    device = torch.device(device)
    cpu, flags = cpu_model_and_flags()
    return {
        # torch's own string names its build too (e.g. 2.14.1+cu130)
        "versions": {name: _version(name) for name in LIBRARIES}
        | {"torch": torch.__version__, "python": platform.python_version()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "cpu": cpu,
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_flags": " ".join(flags),
        "isa_caps": {name: os.environ[name] for name in ISA_CAPS if name in os.environ},
    }
