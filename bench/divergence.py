"""Which ops give other bits on another machine: each op the demo's models use, on fixed
inputs, under this machine's defaults and under the settings that stand in for another
machine (a capped instruction set, another torch), compared bit for bit.

Every setting runs in its own process (the caps are read when torch starts):
- `default`: this machine as the pipeline runs it;
- `aten_avx2`: ATen's vector kernels (softmax, norms, GELU, reductions) at AVX2 width
  (`ATEN_CPU_CAPABILITY=avx2`), as on a CPU without AVX-512;
- `onednn_avx512_core`: oneDNN without bf16 instructions (`ONEDNN_MAX_CPU_ISA=AVX512_CORE`),
  the pipeline's fp32 path on this CPU;
- `onednn_avx2`: oneDNN at AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`);
- `--python PATH`: the defaults under another interpreter, e.g. a venv with another torch.

    python bench/divergence.py [--python /path/to/other/venv/bin/python]

Prints one JSON line: per setting and op, whether the output is bit-identical to the
default's and the largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SETTINGS = {
    "default": {},
    "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "onednn_avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def compute(out: Path) -> None:
    """Each op on seeded inputs (the tiny models' shapes), saved as float32 arrays."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(64, 128, 64)  # (batch, tokens, width), as the tiny CLIP's towers
    w, b = torch.randn(256, 64) / 8, torch.randn(256)
    image = torch.randn(32, 64, 16, 16)  # (batch, channels, h, w), as the tiny UNet's
    kernel = torch.randn(128, 64, 3, 3) / 24
    q, k, v = (torch.randn(32, 4, 64, 32) for _ in range(3))
    ops = {
        "linear": lambda: F.linear(x, w, b),
        "matmul": lambda: x @ x.transpose(1, 2),
        "conv2d": lambda: F.conv2d(image, kernel, padding=1),
        "conv2d_channels_last": lambda: F.conv2d(
            image.contiguous(memory_format=torch.channels_last), kernel, padding=1
        ),
        "layer_norm": lambda: F.layer_norm(x, (64,)),
        "group_norm": lambda: F.group_norm(image, 32),
        "softmax": lambda: x.softmax(dim=-1),
        "gelu": lambda: F.gelu(x),
        "silu": lambda: F.silu(image),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "sum": lambda: x.sum(dim=(1, 2)),
        "adamw_step": adamw_step,
    }
    results = {name: op().float().numpy() for name, op in ops.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        results["linear_bf16_autocast"] = F.linear(x, w, b).float().numpy()
        results["conv2d_bf16_autocast"] = F.conv2d(image, kernel, padding=1).float().numpy()
    results["torch"] = np.array(torch.__version__)
    results["capability"] = np.array(torch.backends.cpu.get_cpu_capability())
    np.savez(out, **results)


def adamw_step() -> object:
    """Three fused AdamW steps on a seeded weight, as the training stages take them."""
    import torch

    weight = torch.nn.Parameter(torch.randn(256, 64))
    optimizer = torch.optim.AdamW([weight], lr=1e-3, fused=True)
    for _ in range(3):
        optimizer.zero_grad()
        (weight.sin() * weight).sum().backward()
        optimizer.step()
    return weight.detach()


def run_setting(python: str, env: dict[str, str], out: Path) -> dict[str, np.ndarray]:
    subprocess.run([python, __file__, "--child", str(out)], check=True, env=os.environ | env)
    with np.load(out) as data:
        return {name: data[name] for name in data.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--python", help="another interpreter (e.g. with another torch)")
    args = parser.parse_args()
    if args.child:
        compute(args.child)
        return
    settings = {name: (sys.executable, env) for name, env in SETTINGS.items()}
    if args.python:
        settings["other_python"] = (args.python, {})
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {
            name: run_setting(python, env, Path(tmp) / f"{name}.npz")
            for name, (python, env) in settings.items()
        }
    reference = outputs["default"]
    report: dict[str, object] = {
        "torch": {name: str(out.pop("torch")) for name, out in outputs.items()},
        "capability": {name: str(out.pop("capability")) for name, out in outputs.items()},
    }
    for name, out in outputs.items():
        if name == "default":
            continue
        report[name] = {
            op: {
                "identical": bool(np.array_equal(value, reference[op])),
                "max_abs_diff": float(np.abs(value - reference[op]).max()),
            }
            for op, value in out.items()
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
