"""Which garment colours survive the base SD's VAE round trip: the pixel judge's accuracy
per palette colour on test images, as they are and after encoding and decoding at the
generation resolution. A colour the VAE cannot reconstruct caps every model decoded by it
(generate and redress alike). Prints one JSON line.

    python bench/vae_colors.py [--base-sd models/base_sd] [--subset data/subset] [--n 800]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fashion.data.attributes import COLOR
from fashion.data.subset import read_images, read_table
from fashion.metrics.garment_color import SOLID_CODES, garment_color
from fashion.sd.models import load_base_sd, to_vae_pixels


def to_unit(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-sd", type=Path, default=Path("models/base_sd"))
    parser.add_argument("--subset", type=Path, default=Path("data/subset"))
    parser.add_argument("--n", type=int, default=800, help="first n solid-colour test images")
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    table = read_table(args.subset / "test.h5")
    rows = np.flatnonzero(np.isin(table["color"], SOLID_CODES))[: args.n]
    images = read_images(args.subset / "test.h5", rows)
    vae = load_base_sd(args.base_sd).vae.eval()
    original, reconstructed = [], []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            x = to_vae_pixels(images[start : start + 64], args.resolution)
            original.append(to_unit(x))
            reconstructed.append(to_unit(vae(x).sample))
    truth = table["color"].to_numpy()[rows]
    hits = {
        name: garment_color(np.concatenate(parts)) == truth
        for name, parts in (("original", original), ("reconstructed", reconstructed))
    }
    per_color = {
        COLOR[int(c)]: {
            "n": int((truth == c).sum()),
            **{name: round(float(hit[truth == c].mean()), 3) for name, hit in hits.items()},
        }
        for c in np.unique(truth)
    }
    print(
        json.dumps(
            {
                "bench": "vae_colors",
                "n": len(rows),
                "resolution": args.resolution,
                **{name: round(float(hit.mean()), 3) for name, hit in hits.items()},
                "per_color": per_color,
            }
        )
    )


if __name__ == "__main__":
    main()
