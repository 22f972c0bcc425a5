"""The training step of the demo's tiny UNet (params.yaml's base_sd.tiny, batch 32 of random
latents and text states) with AdamW's default update (per tensor on the CPU) vs the fused kernel
(`fashion.train.optimizer.adamw`), side by side: rounds interleaved, one step of each per
round on two copies of the same UNet. Prints one JSON line with the median seconds of the
whole step and of `optimizer.step()` alone, and their ratios.

    python bench/optimizer_step.py [--rounds 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from fashion.sd.models import build_tiny_sd
from fashion.train.optimizer import adamw

WARMUP = 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    tiny = yaml.safe_load(Path("params.yaml").read_text())["base_sd"]["tiny"]
    unet = build_tiny_sd(["the lady wore a red dress", "a man in a blue tee"] * 20, tiny).unet
    unets = {"per_tensor": unet, "fused": copy.deepcopy(unet)}
    optimizers = {
        "per_tensor": torch.optim.AdamW(unets["per_tensor"].parameters(), lr=1e-4),
        "fused": adamw(unets["fused"].parameters(), "cpu", lr=1e-4),
    }
    latent = tiny["resolution"] // 2 ** (len(tiny["vae_channels"]) - 1)
    x = torch.randn(args.batch, 4, latent, latent)
    t = torch.randint(0, 1000, (args.batch,))
    text = torch.randn(args.batch, int(tiny["max_length"]), int(tiny["text_width"]))
    step_s = {k: [] for k in unets}
    update_s = {k: [] for k in unets}
    for round_ in range(args.rounds + WARMUP):
        kinds = list(unets) if round_ % 2 == 0 else list(unets)[::-1]  # alternate who goes first
        for kind in kinds:
            model = unets[kind]
            began = time.perf_counter()
            loss = model(x, t, text).sample.square().mean()
            optimizers[kind].zero_grad(set_to_none=True)
            loss.backward()
            updating = time.perf_counter()
            optimizers[kind].step()
            ended = time.perf_counter()
            step_s[kind].append(ended - began)
            update_s[kind].append(ended - updating)
    step = {k: statistics.median(v[WARMUP:]) for k, v in step_s.items()}
    update = {k: statistics.median(v[WARMUP:]) for k, v in update_s.items()}
    print(
        json.dumps(
            {
                "bench": "optimizer_step",
                "rounds": args.rounds,
                "batch": args.batch,
                "threads": torch.get_num_threads(),
                "step_s": {k: round(v, 4) for k, v in step.items()},
                "update_s": {k: round(v, 4) for k, v in update.items()},
                "step_ratio": round(step["per_tensor"] / step["fused"], 3),
                "update_ratio": round(update["per_tensor"] / update["fused"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
