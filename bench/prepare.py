"""Time and memory of the prepare stage on a full-size demo benchmark.

Generates the demo benchmark (`stages/demo_benchmark.py`, `--n` images, 78,979 by default
as in the release) in a scratch copy of the project, then runs `stages/prepare.py` there
(all train and test images) in a subprocess and prints one JSON line: `n_images`,
`seconds` (prepare only) and `peak_rss_mb` (peak resident memory of the prepare process).

    python bench/prepare.py [--n 78979] [--dir /big/disk]

Disk: G2.h5 is ~196 KB per image (15.5 GB at full size); the demo stage, the zip, the
temporary extraction and the subset together need ~50 GB at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZE = 78979
DISK_FULL_SIZE_GB = 50


def run_stage(project: Path, stage: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `python stages/<stage>.py` run in `project`; the stage's
    output goes to stderr (stdout is this bench's JSON line)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=project, stdout=sys.stderr)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{stage} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=FULL_SIZE, help="images in the demo benchmark")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder on a big disk")
    args = parser.parse_args()

    scratch_parent = args.dir or Path(tempfile.gettempdir())
    need_gb = DISK_FULL_SIZE_GB * args.n / FULL_SIZE + 1
    free_gb = shutil.disk_usage(scratch_parent).free / 1e9
    if free_gb < need_gb:
        sys.exit(
            f"not enough disk: {args.n} images need ~{need_gb:.0f} GB free in {scratch_parent}, "
            f"{free_gb:.0f} GB are free (use --dir on a bigger disk or a smaller --n)"
        )

    with tempfile.TemporaryDirectory(dir=scratch_parent) as scratch:
        project = Path(scratch)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "stages", project / "stages", ignore=ignore)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["demo"]["n_images"] = args.n
        params["benchmark"]["root"] = "data/demo_benchmark"
        params["prepare"] |= {"n_train_images": "all", "n_test_images": "all"}
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        os.environ.pop(params["benchmark"]["password_env"], None)  # the demo's password

        demo_seconds, _ = run_stage(project, "demo_benchmark")
        seconds, peak_rss_mb = run_stage(project, "prepare")
        zip_size = (project / "data/demo_benchmark/Img/G2.zip").stat().st_size
        print(
            json.dumps(
                {
                    "n_images": args.n,
                    "seconds": round(seconds, 1),
                    "peak_rss_mb": round(peak_rss_mb, 1),
                    "images_per_s": round(args.n / seconds, 1),
                    "zip_mb": round(zip_size / 1e6, 1),
                    "demo_seconds": round(demo_seconds, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
