"""Time of the demo benchmark's ZipCrypto `zip` at two deflate levels, on a demo G2.h5.

Draws `--images` demo garments into a G2.h5 in the released layout (as the demo_benchmark
stage does), then zips it with `fashion.demo.release_writer`'s command at each level, the
levels alternating over `--rounds` rounds. Prints one JSON line with the median seconds,
the archive sizes and `ratio` = first level's time / second's.
Usage: python bench/demo_zip.py [--images 2000] [--rounds 3] [--levels 6 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from fashion.data.attributes import ATTRIBUTES
from fashion.demo.codes import sample_codes
from fashion.demo.drawing import draw_garments
from fashion.demo.release_writer import write_g2_h5

BATCH = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", type=int, nargs=2, default=[6, 1])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    codes = sample_codes(args.images, rng)
    sample = sample_codes(256, rng)
    ih_mean = draw_garments(*(sample[k] for k in ATTRIBUTES), rng)[0].mean(0)  # as the stage
    batches = (
        draw_garments(*(codes[k][s : s + BATCH] for k in ATTRIBUTES), rng)
        for s in range(0, args.images, BATCH)
    )
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "G2.h5"
        write_g2_h5(h5, args.images, batches, ih_mean)
        times: dict[int, list[float]] = {level: [] for level in args.levels}
        sizes = {}
        for round_ in range(args.rounds):
            for level in args.levels if round_ % 2 == 0 else args.levels[::-1]:
                archive = Path(tmp) / f"G2-{level}.zip"
                archive.unlink(missing_ok=True)
                start = time.perf_counter()
                subprocess.run(
                    ["zip", "-q", f"-{level}", "-P", "pw", str(archive), h5.name],
                    cwd=tmp, check=True,
                )  # fmt: skip
                times[level].append(time.perf_counter() - start)
                sizes[level] = archive.stat().st_size
        first, second = (statistics.median(times[level]) for level in args.levels)
        print(json.dumps({
            "bench": "demo_zip", "images": args.images, "h5_mb": round(h5.stat().st_size / 2**20),
            **{f"level{lv}_s": round(statistics.median(times[lv]), 2) for lv in args.levels},
            **{f"level{lv}_mb": round(sizes[lv] / 2**20, 1) for lv in args.levels},
            "ratio": round(first / second, 4),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
