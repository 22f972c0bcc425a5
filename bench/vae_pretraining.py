"""How the tiny VAE's pretraining settings keep garment colours: pretrain a fresh tiny VAE
(params.yaml's base_sd.tiny) on the train split less validation, then read the validation
images' colours with the pixel judge after its round trip, overall and per colour. For
choosing `base_sd.vae_pretraining` on the validation split. Prints one JSON line.

    python bench/vae_pretraining.py [--steps 3000] [--crop 32|none] [--lr 0.003]
        [--chroma-weight 3] [--norm-groups 1] [--batch 32] [--seed 0] [--layout nhwc|nchw]
        [--color-balance 0.5] [--precision bf16|fp32]

Pretraining settings not given are params.yaml's; `--seed` (weights and batches) is 0 and
`--layout` nhwc unless given; `--precision` as `base_sd.vae_pretraining.precision` (bf16
runs as fp32 on a CPU without bf16 instructions; the JSON line says what ran).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from fashion.data.attributes import COLOR
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_images, read_table
from fashion.metrics.garment_color import SOLID_CODES, garment_color
from fashion.sd.models import balanced_weights, build_tiny_sd, pretrain_vae, to_vae_pixels
from fashion.sd.precision import compute_dtype


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--crop", default=None, help="crop size, or none")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--chroma-weight", type=float, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--norm-groups", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="as training.seed: weights and batches")
    parser.add_argument("--layout", choices=["nhwc", "nchw"], default="nhwc")
    parser.add_argument("--color-balance", type=float, default=None)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--subset", type=Path, default=Path("data/subset"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    tiny, vae_params = params["base_sd"]["tiny"], params["base_sd"]["vae_pretraining"]
    names = ("steps", "crop", "lr", "chroma_weight", "batch_size", "color_balance", "precision")
    for name in names:
        given = getattr(args, "batch" if name == "batch_size" else name)
        if given is not None:
            vae_params[name] = None if given == "none" else given
    steps, lr, chroma_weight, color_balance = (
        int(vae_params["steps"]),
        float(vae_params["lr"]),
        float(vae_params.get("chroma_weight", 0.0)),
        float(vae_params.get("color_balance", 0.0)),
    )
    precision = compute_dtype(vae_params.get("precision", "fp32"), "cpu", "--precision")
    if args.norm_groups is not None:
        tiny["vae_norm_groups"] = args.norm_groups
    resolution, crop = int(tiny["resolution"]), vae_params.get("crop")
    crop = None if crop is None else int(crop)
    train = args.subset / "train.h5"
    table = read_table(train)
    rows, val = train_validation_rows(table, params["split"])
    vae = build_tiny_sd(table["caption"].iloc[rows], tiny, args.seed).vae
    training_images = read_images(train, rows)
    began = time.perf_counter()
    pretrain_vae(
        vae, training_images, resolution, steps, int(vae_params["batch_size"]), lr,
        float(vae_params["kl_weight"]), args.seed, crop, vae_params["loss"],
        chroma_weight=chroma_weight, channels_last=args.layout == "nhwc",
        sample_weights=balanced_weights(table["color"].to_numpy()[rows], color_balance),
        precision=precision,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    truth = table["color"].to_numpy()[val]
    solid = np.isin(truth, SOLID_CODES)
    images, truth = read_images(train, val[solid]), truth[solid]
    with torch.no_grad():
        out = [
            vae(to_vae_pixels(images[i : i + 64], resolution)).sample
            for i in range(0, len(images), 64)
        ]
    decoded = ((torch.cat(out).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    hit = garment_color(decoded) == truth
    per_color = {
        COLOR[int(c)]: {
            "n": int((truth == c).sum()),
            "acc": round(float(hit[truth == c].mean()), 3),
        }
        for c in np.unique(truth)
    }
    print(
        json.dumps(
            {
                "bench": "vae_pretraining",
                "steps": steps,
                "crop": crop,
                "lr": lr,
                "chroma_weight": chroma_weight,
                "color_balance": color_balance,
                "norm_groups": tiny.get("vae_norm_groups", 8),
                "batch": int(vae_params["batch_size"]),
                "seed": args.seed,
                "layout": args.layout,
                "precision": str(precision).removeprefix("torch."),
                "seconds": round(seconds),
                "validation_images": len(truth),
                "acc": round(float(hit.mean()), 3),
                "per_color": per_color,
            }
        )
    )


if __name__ == "__main__":
    main()
