"""Garment colour accuracy of the generated demo images, base vs fine-tuned.

Reads data/generated/manifest.csv; for in-domain prompts naming a solid colour, the
nearest palette colour of the garment region (fashion.metrics.garment_color) is compared with
the prompt's colour. Chance is 1 / number of solid colours. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion.metrics.garment_color import SOLID_CODES, garment_color


def main(root: Path = Path("data/generated")) -> None:
    manifest = pd.read_csv(root / "manifest.csv")
    rows = manifest[(manifest.source == "in_domain") & manifest.color.isin(SOLID_CODES)]
    out = {"bench": "sd_color", "chance": round(1 / len(SOLID_CODES), 4)}
    for model, group in rows.groupby("model"):
        images = np.stack([np.asarray(Image.open(root / f), np.float32) / 255 for f in group.file])
        hit = garment_color(images) == group.color.to_numpy()
        out[f"{model}_accuracy"] = round(float(hit.mean()), 4)
        out[f"{model}_n"] = int(len(hit))
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/generated"))
