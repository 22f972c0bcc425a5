"""Garment colour accuracy of the generated demo images, base vs fine-tuned.

Reads data/generated/manifest.csv; for in-domain prompts naming a solid colour, the
nearest palette colour of the garment region (fashion.metrics.garment_color) is compared with
the prompt's colour. Chance is 1 / number of solid colours. Prints one JSON line.

    python bench/sd_color.py [GENERATED_DIR]   # default data/generated (the generate stage)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion.metrics.garment_color import SOLID_CODES, garment_color


def accuracy(root: Path) -> dict[str, float | int | str]:
    """Per model: share of solid-colour in-domain images whose garment reads as the prompt's."""
    manifest = pd.read_csv(root / "manifest.csv")
    rows = manifest[(manifest.source == "in_domain") & manifest.color.isin(SOLID_CODES)]
    out: dict[str, float | int | str] = {
        "bench": "sd_color",
        "chance": round(1 / len(SOLID_CODES), 4),
    }
    for model, group in rows.groupby("model"):
        images = np.stack([np.asarray(Image.open(root / f), np.float32) / 255 for f in group.file])
        hit = garment_color(images) == group.color.to_numpy()
        out[f"{model}_accuracy"] = round(float(hit.mean()), 4)
        out[f"{model}_n"] = int(len(hit))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("data/generated"))
    args = parser.parse_args()
    if not (args.root / "manifest.csv").is_file():
        parser.error(f"{args.root / 'manifest.csv'}: not found (run the generate stage first)")
    print(json.dumps(accuracy(args.root)))


if __name__ == "__main__":
    main()
