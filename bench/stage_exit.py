"""What a stage process pays after its work: the interpreter's teardown of the modules the
SD stages import, against `fashion.core.stage.quick_exit`.

Each round starts two fresh interpreters (stages/ on the path, as a stage runs) that import
`--module` and end, one normally, one through `quick_exit`, in alternating order. Prints one
JSON line with the median wall seconds of each and their difference (the teardown).
Usage: python bench/stage_exit.py [--rounds 7] [--module fashion.sd.loop]
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

STAGES = Path(__file__).resolve().parents[1] / "stages"


def wall(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=STAGES,
                   env={**os.environ, "PYTHONPATH": str(STAGES)})  # fmt: skip
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--module", default="fashion.sd.loop")
    args = parser.parse_args()
    codes = {
        "normal_s": f"import {args.module}",
        "quick_exit_s": f"import {args.module}; from fashion.core.stage import quick_exit; "
        "quick_exit()",
    }
    times: dict[str, list[float]] = {k: [] for k in codes}
    wall(codes["normal_s"])  # warm the file cache
    for r in range(args.rounds):
        for name in sorted(codes, reverse=r % 2 == 1):
            times[name].append(wall(codes[name]))
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    teardown = round(med["normal_s"] - med["quick_exit_s"], 3)
    print(json.dumps({"module": args.module, "rounds": args.rounds, **med, "teardown_s": teardown}))


if __name__ == "__main__":
    main()
