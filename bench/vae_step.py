"""Per-step time of the tiny VAE's pretraining (base_sd) in the NCHW and NHWC layouts.

Two copies of params.yaml's tiny VAE (`base_sd.tiny`) run `pretrain_vae` with the
`base_sd.vae_pretraining` settings on the same demo drawings, in short alternating runs
(which layout goes first alternates too); each step is timed from one `on_step` call to
the next, the first steps of a run not counted. Prints one JSON line with the medians and
`ratio` = NCHW / NHWC.
Usage: python bench/vae_step.py [--rounds 8] [--steps 12]
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
from sd_step import drawn  # bench/ is on the path when a bench script runs

from fashion.sd.models import build_tiny_sd, pretrain_vae

WARMUP = 2  # steps of each run not timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    tiny, p = params["base_sd"]["tiny"], params["base_sd"]["vae_pretraining"]
    images, captions, _ = drawn(512)
    vae = build_tiny_sd(captions, tiny, seed=0).vae
    layouts = {"nchw": False, "nhwc": True}
    models = {name: copy.deepcopy(vae) for name in layouts}

    times: dict[str, list[float]] = {name: [] for name in layouts}
    for round_ in range(args.rounds):
        names = list(layouts) if round_ % 2 == 0 else list(layouts)[::-1]
        for name in names:
            stamps: list[float] = []
            pretrain_vae(
                models[name], images, int(tiny["resolution"]), args.steps,
                int(p["batch_size"]), float(p["lr"]), float(p["kl_weight"]), seed=round_,
                crop=p.get("crop"), loss=p.get("loss", "l1"),
                chroma_weight=float(p.get("chroma_weight", 0.0)),
                on_step=lambda step, loss, stamps=stamps: stamps.append(time.perf_counter()),
                channels_last=layouts[name],
            )  # fmt: skip
            times[name] += list(np.diff(stamps[WARMUP:]))
    nchw, nhwc = (statistics.median(times[k]) for k in layouts)
    print(json.dumps({
        "bench": "vae_step", "batch": int(p["batch_size"]), "crop": p.get("crop"),
        "steps_timed": len(times["nchw"]), "threads": torch.get_num_threads(),
        "nchw_ms": round(nchw * 1e3, 2), "nhwc_ms": round(nhwc * 1e3, 2),
        "ratio": round(nchw / nhwc, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
