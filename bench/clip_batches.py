"""Per-batch time of finetune_clip's batches: `make_batch` (the processor and tokenizer in
every step) vs `BatchMaker` (captions tokenised and pixel values computed once), on demo
drawings with params.yaml's tiny CLIP (`base_clip.tiny`) at `finetune_clip.batch_size`.

Interleaved rounds (which goes first alternates); prints one JSON line with the median ms
per batch, `ratio` = make_batch / BatchMaker, and the one-off set-up of BatchMaker.
Usage: python bench/clip_batches.py [--images 4096] [--rounds 10] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import yaml
from sd_step import drawn  # bench/ is on the path when a bench script runs

from fashion.clip.data import BatchMaker, Pairs, make_batch, presize
from fashion.clip.models import build_tiny_clip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    batch_size = int(params["finetune_clip"]["batch_size"])
    images, captions, _ = drawn(args.images)
    _, processor = build_tiny_clip(captions, params["base_clip"]["tiny"], seed=0)
    _, ids = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    pairs = Pairs(presize(processor, images), captions, ids.astype(np.int64), {})
    began = time.perf_counter()
    maker = BatchMaker(processor, pairs)
    setup = time.perf_counter() - began
    rng = np.random.default_rng(0)
    rows = [rng.choice(len(pairs), batch_size, replace=False) for _ in range(args.batches)]
    ways = {"make_batch": lambda r: make_batch(processor, pairs, r), "batch_maker": maker}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds):
        for name in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
            began = time.perf_counter()
            for r in rows:
                ways[name](r)
            times[name].append((time.perf_counter() - began) / len(rows))
    plain, made = (statistics.median(times[k]) for k in ways)
    print(json.dumps({
        "bench": "clip_batches", "images": len(pairs), "batch": batch_size,
        "make_batch_ms": round(plain * 1e3, 2), "batch_maker_ms": round(made * 1e3, 2),
        "ratio": round(plain / made, 2), "batch_maker_setup_s": round(setup, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
