"""The app's latencies on this machine, over a finished `dvc repro` in the project's folder.

    python bench/app_latency.py [--root .] [--rounds 5]

Each is the median of `--rounds` after one warm-up call (the models loaded, the embeddings
cached): Generate (8 images from each model), Search (a sentence over the test split),
Redress (4 rows), and the start-up of `python -m fashion.app` until the page answers, with
the test embeddings already cached. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from fashion.app import generate, redress, search
from fashion.app.outputs import read_outputs
from fashion.data.pairs import redress_rows


def median_seconds(call: Callable[[], object], rounds: int) -> float:
    call()  # warm-up: models loaded, caches filled
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def startup_seconds(root: Path) -> float:
    """From `python -m fashion.app` to the page's first answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "fashion.app", "--root", str(root), "--port", str(port),
         "--no-browser"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                return time.perf_counter() - began
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("the app stopped before it answered") from None
                time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    outputs = read_outputs(args.root)
    tests = search.test_set(outputs)
    query = "the man wore a blue short-sleeved tee."
    settings = generate.Settings.defaults(outputs, n_images=8)
    index = int(redress_rows(tests.path)[0][0])
    results = {
        "generate_8_s": median_seconds(
            lambda: generate.generate(outputs, query, settings), args.rounds
        ),
        "search_ms": 1000 * median_seconds(lambda: search.search(tests, query, 8), args.rounds),
        "redress_4_s": median_seconds(
            lambda: redress.redress(outputs, tests, index, "", rows=4), args.rounds
        ),
        "startup_s": statistics.median(startup_seconds(args.root) for _ in range(3)),
    }
    print(
        json.dumps(
            {
                "bench": "app_latency",
                **{k: round(v, 3) for k, v in results.items()},
                "test_images": len(tests),
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
