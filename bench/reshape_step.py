"""The shape model's costs on this machine: a training step in fp32 vs bf16 autocast, and
the argmax of 128 px logits over the class axis as laid out (N, 7, H, W) vs classes last.

    python bench/reshape_step.py [--rounds 5] [--batch 64]

The demo's shape model (params.yaml `reshape`) with random weights on drawn maps, interleaved
rounds, medians. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from fashion.demo.drawing import draw_garments  # noqa: E402
from fashion.shape.maps import coarse_maps  # noqa: E402
from fashion.shape.model import ShapeConfig, ShapeNet  # noqa: E402
from fashion.shape.training import ShapeData, batch_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and setting")
    args = parser.parse_args()
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["reshape"]
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    codes = [rng.integers(0, 2, n), rng.integers(1, 18, n), rng.integers(1, 4, n)]
    _, maps = draw_garments(*codes, rng.integers(1, 20, n), rng)
    cfg = ShapeConfig(
        vocab=("the", "lady", "man", "red", "dress"), coarse_size=p["coarse_size"],
        work_size=p["work_size"], width=p["width"], text_dim=p["text_dim"], out_size=128,
    )  # fmt: skip
    step = 128 // p["loss_size"]
    data = ShapeData(
        torch.from_numpy(coarse_maps(maps, cfg.coarse_size)),
        torch.randint(1, 7, (n, cfg.max_words)),
        torch.from_numpy(maps[:, ::step, ::step].astype(np.int64)),
    )
    torch.manual_seed(0)
    model = ShapeNet(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, fused=True)

    def train(dtype: torch.dtype) -> None:
        for k in range(args.steps):
            rows = np.arange(k * args.batch, (k + 1) * args.batch)
            with torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
                loss = batch_loss(model, data, rows, np.zeros(len(rows), bool))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    logits = torch.randn(256, 7, 128, 128)
    argmax = {
        "classes_axis": lambda: logits.argmax(dim=1),
        "classes_last": lambda: logits.permute(0, 2, 3, 1).contiguous().argmax(dim=-1),
    }
    assert torch.equal(argmax["classes_axis"](), argmax["classes_last"]())
    times: dict[str, list[float]] = {k: [] for k in ("fp32", "bf16", *argmax)}
    train(torch.float32)  # warm-up
    train(torch.bfloat16)
    for _ in range(args.rounds):
        times["fp32"].append(timed(lambda: train(torch.float32)) / args.steps)
        times["bf16"].append(timed(lambda: train(torch.bfloat16)) / args.steps)
        for name, fn in argmax.items():
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "step_s_fp32": round(med["fp32"], 4),
                "step_s_bf16": round(med["bf16"], 4),
                "bf16_speedup": round(med["fp32"] / med["bf16"], 2),
                "argmax_256_s_classes_axis": round(med["classes_axis"], 4),
                "argmax_256_s_classes_last": round(med["classes_last"], 4),
                "argmax_speedup": round(med["classes_axis"] / med["classes_last"], 1),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
