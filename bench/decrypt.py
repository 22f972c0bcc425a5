"""Decryption speed of G2.zip: the project's readers vs `unzip -P` and the stdlib.

Builds a ZipCrypto and a WinZip-AES archive of the same generated member (float32
mean-subtracted-looking pixels, deflated), then times, interleaved, `--repeats` times:
the project's ZipCrypto path, `unzip -P` (both extracting the whole member to disk), the
AES path, and stdlib `zipfile` on the first 64 MB. Prints one JSON line of medians in MB/s
of decrypted output (1 MB = 1e6 bytes).

    python bench/decrypt.py [--mb 1100] [--repeats 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from fashion.data.decrypt import extracted_member
from fashion.demo.release_writer import write_encrypted_zip

PASSWORD = "bench-password"
STDLIB_BYTES = 64 * 2**20


def make_member(path: Path, megabytes: int, seed: int = 0) -> None:
    """Float32 pixels on a 1/255 grid minus a mean: compresses about as poorly as photos do."""
    rng = np.random.default_rng(seed)
    mean = rng.random(2**20, dtype=np.float32)
    block = 2**20 * 4  # bytes per write
    with path.open("wb") as f:
        for _ in range(megabytes * 10**6 // block + 1):
            levels = np.cumsum(rng.integers(-3, 4, 2**20), dtype=np.int64) % 256
            f.write((levels.astype(np.float32) / 255 - mean).tobytes())


def time_project(zip_path: Path, out_dir: Path) -> float:
    start = time.perf_counter()
    with extracted_member(zip_path, PASSWORD, out_dir, progress=False) as member:
        size = member.stat().st_size
        elapsed = time.perf_counter() - start
    return size / elapsed / 1e6


def time_unzip(zip_path: Path, out_dir: Path, size: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["unzip", "-qq", "-o", "-P", PASSWORD, str(zip_path), "-d", str(out_dir)], check=True
    )
    elapsed = time.perf_counter() - start
    for path in sorted(out_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    return size / elapsed / 1e6


def time_stdlib(zip_path: Path) -> float:
    start = time.perf_counter()
    read = 0
    with zipfile.ZipFile(zip_path) as zf, zf.open(zf.infolist()[0], pwd=PASSWORD.encode()) as f:
        while read < STDLIB_BYTES and (data := f.read(2**20)):
            read += len(data)
    return read / (time.perf_counter() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mb", type=int, default=1100, help="member size in MB (>= 1000 for the target)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (needs ~3x --mb)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        work = Path(scratch)
        member = work / "G2.h5"
        make_member(member, args.mb)
        size = member.stat().st_size
        zips = {kind: work / f"{kind}.zip" for kind in ("zipcrypto", "aes")}
        for kind, path in zips.items():
            write_encrypted_zip(path, member, "G2/G2.h5", PASSWORD, kind)
        member.unlink()
        out = work / "out"
        out.mkdir()
        runs: dict[str, list[float]] = {"project": [], "unzip": [], "aes": [], "stdlib": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits every method alike
            runs["project"].append(time_project(zips["zipcrypto"], out))
            runs["unzip"].append(time_unzip(zips["zipcrypto"], out, size))
            runs["aes"].append(time_project(zips["aes"], out))
            runs["stdlib"].append(time_stdlib(zips["zipcrypto"]))
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(
            json.dumps(
                {
                    "member_mb": round(size / 1e6, 1),
                    "compressed_mb": round(zips["zipcrypto"].stat().st_size / 1e6, 1),
                    "repeats": args.repeats,
                    "project_zipcrypto_mb_s": round(med["project"], 1),
                    "unzip_mb_s": round(med["unzip"], 1),
                    "stdlib_zipfile_first_64mb_mb_s": round(med["stdlib"], 2),
                    "aes_mb_s": round(med["aes"], 1),
                    "ratio_vs_unzip": round(med["project"] / med["unzip"], 3),
                    "runs_mb_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
                }
            )
        )


if __name__ == "__main__":
    main()
