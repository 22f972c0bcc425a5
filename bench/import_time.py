"""Seconds a fresh Python process takes to import modules: what a stage pays before work.

Each module is imported in its own new interpreter (stages/ on the path, as a stage runs),
the modules taking turns over `--rounds` rounds. Prints one JSON line with the median
seconds per module (the interpreter's own start-up included: the `sys` row).
Usage: python bench/import_time.py [--rounds 5] [MODULE ...]
(a MODULE may be a list, e.g. "fashion.sd.loop, torchmetrics.aggregation": one import line)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["sys", "torch", "torchmetrics.aggregation", "diffusers", "fashion.sd.loop"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("modules", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "stages")}
    times: dict[str, list[float]] = {m: [] for m in args.modules}
    for round_ in range(args.rounds):
        order = args.modules if round_ % 2 == 0 else args.modules[::-1]
        for module in order:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True)
            times[module].append(time.perf_counter() - start)
    print(json.dumps({
        "bench": "import_time", "rounds": args.rounds,
        **{m: round(statistics.median(t), 2) for m, t in times.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
