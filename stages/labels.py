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


def main(
    subset: Path = Path("data/subset"),
    out: Path = Path("data/labels"),
    metrics_file: Path = Path("metrics/labels.json"),
) -> None:
    tables = []
    for split in SPLITS:
        path = subset_path(subset, split)
        tables.append(label_table(read_table(path), split, path))
    labels = pd.concat(tables, ignore_index=True)
    metrics = {"rows": len(labels), **agreement(labels)}

    with atomic_path(out, is_dir=True) as tmp:
        labels.to_csv(tmp / "labels.csv", index=False)
        (tmp / "label_maps.json").write_text(json.dumps(label_maps_json(), indent=2) + "\n")
        with atomic_path(metrics_file) as metrics_path:
            metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    for attr, rate in metrics.items():
        if isinstance(rate, dict):
            print(f"{attr}: {rate['agree']} of {rate['named']} named values agree with the code")
    print(f"wrote {len(labels)} rows to {out / 'labels.csv'}")


if __name__ == "__main__":
    run_stage(main)
