"""Per-step time of the finetune_clip training step vs a plain loop, on the same model and batches.

Plain loop: `CLIPModel(..., return_loss=True)`, `loss.backward()`, `AdamW.step()`. Stage loop:
`fashion.clip.training.train_step` under an `Accelerator` (caption-level targets, gradient
clipping, scheduler, logit-scale clamp) with the params.yaml optimiser settings. Two copies of
one model; steps alternate between the loops; prints one JSON line with the medians.
Usage: python bench/clip_step.py [--steps 60] [--width 256] [--layers 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator

from fashion.clip.models import build_tiny_clip
from fashion.clip.training import make_optimizer, make_scheduler, train_step
from fashion.data.captions import compose_caption


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    p = params["finetune_clip"]
    towers = {
        f"{t}_{k}": v
        for t in ("vision", "text")
        for k, v in (("width", args.width), ("layers", args.layers), ("heads", 4))
    }
    tiny = {**params["base_clip"]["tiny"], **towers, "projection_dim": args.width}  # fmt: skip

    rng = np.random.default_rng(0)
    codes = rng.integers([0, 1, 1, 1], [2, 18, 4, 20], size=(args.batch * 4, 4))
    captions = [compose_caption(*c) for c in codes]
    model, processor = build_tiny_clip(captions, tiny, seed=0)
    plain = copy.deepcopy(model)
    size = tiny["image_size"]
    batches = []
    for i in range(4):
        rows = slice(i * args.batch, (i + 1) * args.batch)
        tokens = processor.tokenizer(captions[rows], padding=True, return_tensors="pt")
        batches.append({
            "pixel_values": torch.randn(args.batch, 3, size, size),
            "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
            "caption_ids": torch.as_tensor(np.unique(captions[rows], return_inverse=True)[1]),
        })  # fmt: skip

    accelerator = Accelerator()
    optimizer = make_optimizer(model, p, accelerator.device)
    scheduler = make_scheduler(optimizer, p, args.steps + 3)  # spans every step run
    model, optimizer = accelerator.prepare(model, optimizer)
    plain_optimizer = torch.optim.AdamW(plain.parameters(), lr=float(p["lr"]))

    def stage_step(batch):
        train_step(accelerator, model, optimizer, scheduler, batch, p["max_grad_norm"]).item()

    def plain_step(batch):
        inputs = {k: v for k, v in batch.items() if k != "caption_ids"}
        loss = plain(**inputs, return_loss=True).loss
        loss.backward()
        plain_optimizer.step()
        plain_optimizer.zero_grad(set_to_none=True)
        loss.item()

    times = {"stage": [], "plain": []}
    for step in range(args.steps + 3):
        batch = batches[step % len(batches)]
        order = [("stage", stage_step), ("plain", plain_step)]
        for name, fn in order if step % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn(batch)
            if step >= 3:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - start)
    stage, plain_ = (statistics.median(times[k]) for k in ("stage", "plain"))
    ratios = [s / q for s, q in zip(times["stage"], times["plain"], strict=True)]
    n_params = sum(t.numel() for t in plain.parameters())
    print(json.dumps({
        "bench": "clip_step", "params": n_params, "batch": args.batch, "steps": args.steps,
        "threads": torch.get_num_threads(), "device": str(accelerator.device),
        "stage_ms": round(stage * 1e3, 2), "plain_ms": round(plain_ * 1e3, 2),
        "ratio": round(stage / plain_, 4), "median_pair_ratio": round(statistics.median(ratios), 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
