"""Per-step time of finetune_clip's training step for two MLP activations of the tiny CLIP.

Builds params.yaml's `base_clip.tiny` CLIP twice, the same but for `hidden_act` (OpenAI
CLIP's quick_gelu, x * sigmoid(1.702 x), is three kernels forward and more backward; gelu
is one each way), and times the stage's `train_step` on the same demo drawings and
captions, one step of each per round, alternating which goes first. Prints one JSON line
with the medians and `ratio` = first / second.
Usage: python bench/clip_activation.py [--rounds 60] [--activations quick_gelu gelu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator

from fashion.clip.data import Pairs, make_batch, presize
from fashion.clip.models import build_tiny_clip
from fashion.clip.training import make_optimizer, make_scheduler, train_step
from fashion.data.attributes import ATTRIBUTES
from fashion.demo.captions import caption_model
from fashion.demo.codes import sample_codes
from fashion.demo.drawing import draw_garments


def drawn_pairs(n: int, seed: int = 0) -> Pairs:
    """`n` demo drawings (uint8 HWC) with codes drawn as the real annotations', captioned
    in the demo's phrasings."""
    rng = np.random.default_rng(seed)
    codes = sample_codes(n, rng)
    images, _ = draw_garments(*(codes[k] for k in ATTRIBUTES), rng=rng)
    captions = caption_model().sample(*(codes[k] for k in ATTRIBUTES), rng, "image")
    caption_ids = np.unique(captions, return_inverse=True)[1].astype(np.int64)
    return Pairs((images * 255).round().astype(np.uint8), captions, caption_ids, codes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--activations", nargs=2, default=["quick_gelu", "gelu"])
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    p, tiny = params["finetune_clip"], params["base_clip"]["tiny"]
    batch_size = int(p["batch_size"])
    pairs = drawn_pairs(batch_size * 4)

    accelerator = Accelerator()
    steps = {}
    for activation in args.activations:
        model, processor = build_tiny_clip(
            pairs.captions, {**tiny, "activation": activation}, seed=0
        )
        optimizer = make_optimizer(model, p, accelerator.device)
        scheduler = make_scheduler(optimizer, p, args.rounds + 3)
        model, optimizer = accelerator.prepare(model, optimizer)
        steps[activation] = (model, optimizer, scheduler)
    pairs.images = presize(processor, pairs.images)  # as the stage: resized once
    order = np.random.default_rng(1).permutation(len(pairs.images))
    batches = [
        make_batch(processor, pairs, order[i * batch_size : (i + 1) * batch_size]) for i in range(4)
    ]

    times: dict[str, list[float]] = {a: [] for a in args.activations}
    for step in range(args.rounds + 3):
        batch = batches[step % len(batches)]
        names = args.activations if step % 2 == 0 else args.activations[::-1]
        for name in names:
            model, optimizer, scheduler = steps[name]
            start = time.perf_counter()
            train_step(accelerator, model, optimizer, scheduler, batch, p["max_grad_norm"]).item()
            if step >= 3:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - start)
    first, second = (statistics.median(times[a]) for a in args.activations)
    print(json.dumps({
        "bench": "clip_activation", "batch": batch_size, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "device": str(accelerator.device),
        **{f"{a}_ms": round(statistics.median(times[a]) * 1e3, 2) for a in args.activations},
        "ratio": round(first / second, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
