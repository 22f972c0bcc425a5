"""The tiny UNet's attention with `unet_head_dim` channels a head, against what the demo built
until 2026-12-06: diffusers' `attention_head_dim` counts heads in `UNet2DConditionModel`,
so `unet_head_dim: 32` gave 32 heads of 4 channels at the 128-channel level.

Two tiny SDs from params.yaml's base_sd.tiny, identical but for the heads, run interleaved
(one of each per round): a finetune_sd training step (the stage's `FineTuner.train_step`,
cached latents, text encoder trained, as the demo) and one `generate` batch in the stage's
precision (the tiny pipeline's own PNDM sampler, not generate's DPM: the same UNet work a
step; CFG, 20 steps). Prints one JSON line with median seconds and
`train_speedup` / `sample_speedup` = the old build's time / the fixed one's.
Usage: python bench/unet_heads.py [--rounds 7] [--batch 32] [--sample-batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from sd_step import drawn_data

from fashion.sd.config import TrainConfig
from fashion.sd.models import build_tiny_sd, load_sd, noise_scheduler, unet_heads
from fashion.sd.precision import compute_dtype
from fashion.sd.training import FineTuner


def build(tiny: dict, captions: list[str], folder: str, heads: tuple[int, ...]) -> None:
    pipe = build_tiny_sd(captions, tiny)
    config = dict(pipe.unet.config, attention_head_dim=heads)
    unet = type(pipe.unet).from_config(config)
    unet.load_state_dict(pipe.unet.state_dict())  # the same weights: heads only split them
    pipe.unet = unet
    pipe.register_modules(unet=unet)
    pipe.save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample-batch", type=int, default=64)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    tiny = params["base_sd"]["tiny"]
    data = drawn_data(args.batch * 8)
    variants = {  # attention_head_dim per block, as diffusers reads it: heads
        "old": (int(tiny["unet_head_dim"]),) * len(tiny["unet_channels"]),
        "fixed": unet_heads(tiny),  # unet_head_dim channels a head
    }
    accelerator = Accelerator()
    dtype = compute_dtype(params["generate"]["precision"], torch.device("cpu"), "generate")
    tuners, pipes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, heads in variants.items():
            folder = f"{tmp}/{name}"
            build(tiny, data.captions, folder, heads)
            cfg = TrainConfig(resolution=int(tiny["resolution"]), batch_size=args.batch, lr=1e-4)
            tuners[name] = FineTuner(
                load_sd(folder), noise_scheduler(folder), cfg, data, accelerator
            )
            pipe = load_sd(folder).to(dtype=dtype)
            pipe.set_progress_bar_config(disable=True)
            pipes[name] = pipe
    prompts = (data.captions * 4)[: args.sample_batch]

    def train(name: str, step: int) -> float:
        start = time.perf_counter()
        tuners[name].train_step(step)
        return time.perf_counter() - start

    def sample(name: str) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            pipes[name](
                prompts, num_inference_steps=20, guidance_scale=4.0, output_type="np",
                generator=torch.Generator().manual_seed(0),
            )  # fmt: skip
        return time.perf_counter() - start

    times: dict[str, list[float]] = {f"{k}_{w}": [] for k in variants for w in ("train", "sample")}
    for r in range(args.rounds + 1):
        for name in variants:
            t = {f"{name}_train": train(name, r), f"{name}_sample": sample(name)}
            if r:  # the first round warms up
                for k, v in t.items():
                    times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "bench": "unet_heads",
                "heads": {k: list(v) for k, v in variants.items()},
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "sample_dtype": str(dtype),
                **{f"{k}_s": round(v, 4) for k, v in med.items()},
                "train_speedup": round(med["old_train"] / med["fixed_train"], 2),
                "sample_speedup": round(med["old_sample"] / med["fixed_sample"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
