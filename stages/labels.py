"""labels stage: the per-image label table, the label maps and caption agreement metrics.

Reads `data/subset/{train,test}.h5`; writes `data/labels/labels.csv` (one row per image of
both splits: codes, names and caption keyword flags), `data/labels/label_maps.json` and
`metrics/labels.json` (how often the codes agree with the words of the caption).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fashion.core.atomic import atomic_path
from fashion.core.stage import run_stage
from fashion.data.labels import agreement, label_maps_json, label_table
from fashion.data.subset import SPLITS, read_table, subset_path

SUBSET_DIR = Path("data/subset")
OUT_DIR = Path("data/labels")
METRICS = Path("metrics/labels.json")


def main() -> None:
    tables = []
    for split in SPLITS:
        path = subset_path(SUBSET_DIR, split)
        tables.append(label_table(read_table(path), split, path))
    labels = pd.concat(tables, ignore_index=True)
    metrics = {"rows": len(labels), **agreement(labels)}

    with atomic_path(OUT_DIR, is_dir=True) as out:
        labels.to_csv(out / "labels.csv", index=False)
        (out / "label_maps.json").write_text(json.dumps(label_maps_json(), indent=2) + "\n")
        with atomic_path(METRICS) as metrics_path:
            metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    for attr, rate in metrics.items():
        if isinstance(rate, dict):
            print(f"{attr}: {rate['agree']} of {rate['named']} named values agree with the code")
    print(f"wrote {len(labels)} rows to {OUT_DIR / 'labels.csv'}")


if __name__ == "__main__":
    run_stage(main)
