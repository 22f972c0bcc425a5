"""Reading rows of a subset file: h5py's point selection (`data[sorted rows]`, what the
stages did) vs `fashion.data.subset.read_dataset_rows` (contiguous slices), side by side.

Three selections of the train split's images: the training rows (train less validation,
dense), a fixed-seed sample of 600 rows (a matched set) and of 36 (a grid). Rounds run
interleaved, one read of each kind per selection; prints one JSON line with the median
seconds of each and their ratio, after checking that both read the same pixels.

    python bench/read_rows.py [--rounds 3] [--subset data/subset]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_dataset_rows, read_table, subset_path


def timed(read, data: h5py.Dataset, rows: np.ndarray) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    out = read(data, rows)
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subset", type=Path, default=Path("data/subset"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    path = subset_path(args.subset, "train")
    table = read_table(path)
    rows, _ = train_validation_rows(table, yaml.safe_load(args.params.read_text())["split"])
    rng = np.random.default_rng(0)
    selections = {
        "training": np.sort(rows),
        "sample_600": np.sort(rng.choice(len(table), 600, replace=False)),
        "sample_36": np.sort(rng.choice(len(table), 36, replace=False)),
    }
    readers = {"point_selection": lambda d, r: d[r], "slices": read_dataset_rows}
    times: dict[str, dict[str, list[float]]] = {s: {k: [] for k in readers} for s in selections}
    with h5py.File(path, "r") as f:
        data = f["images"]
        for _ in range(args.rounds):
            for name, selected in selections.items():
                outs = []
                for kind, read in readers.items():
                    seconds, out = timed(read, data, selected)
                    times[name][kind].append(seconds)
                    outs.append(out)
                if not np.array_equal(*outs):
                    raise SystemExit(f"{name}: the two readers disagree")
    result = {"bench": "read_rows", "file": str(path), "rounds": args.rounds}
    for name, by_kind in times.items():
        point, sliced = (statistics.median(by_kind[k]) for k in readers)
        result[name] = {
            "rows": len(selections[name]),
            "point_selection_s": round(point, 3),
            "slices_s": round(sliced, 3),
            "ratio": round(point / sliced, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
