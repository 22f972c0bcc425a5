"""The demo benchmark's G2.zip written two ways, and read back as `prepare` reads it.

`released`: the G2.h5 chunks stored plain (as the real file) and `zip -1` deflating the
whole file on one core (the demo stage before 2026-12-07). `demo`: each chunk deflated by
h5py while the drawing pool runs, and the zip storing the result (today's stage). Both draw
`--images` demo garments with the stage's own pool, write G2.h5, zip it with ZipCrypto,
then decrypt and read every row back through `prepare`'s functions; the pixels read back
must be equal. The two alternate over `--rounds`. Prints one JSON line: median seconds of
each phase per way, the zip sizes, and `ratio` = released / demo for the whole.
Usage: python bench/demo_release.py [--images 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from demo_benchmark import image_batches  # noqa: E402  (the stage's drawing pool)
from fashion.data.attributes import ATTRIBUTES  # noqa: E402
from fashion.data.decrypt import extracted_member  # noqa: E402
from fashion.data.release import read_g2_rows  # noqa: E402
from fashion.demo.codes import sample_codes  # noqa: E402
from fashion.demo.drawing import draw_garments  # noqa: E402
from fashion.demo.release_writer import write_encrypted_zip, write_g2_h5  # noqa: E402

WAYS = {"released": False, "demo": True}  # way -> chunks deflated (and the zip stores)


def one_way(tmp: Path, images: int, deflated_chunks: bool) -> tuple[dict[str, float], int, str]:
    """Seconds of draw+write, zip and read-back; the zip's bytes; a digest of the pixels."""
    rng = np.random.default_rng(0)
    codes = sample_codes(images, rng)
    sample = sample_codes(256, rng)
    ih_mean = draw_garments(*(sample[k] for k in ATTRIBUTES), rng)[0].mean(0)
    h5, archive = tmp / "G2.h5", tmp / "G2.zip"
    archive.unlink(missing_ok=True)
    seconds = {}
    start = time.perf_counter()
    batches = image_batches(codes, np.random.SeedSequence(0))
    write_g2_h5(h5, images, batches, ih_mean, deflate_chunks=deflated_chunks)
    seconds["write"] = time.perf_counter() - start
    start = time.perf_counter()
    write_encrypted_zip(archive, h5, "G2.h5", "pw", "zipcrypto", deflate=not deflated_chunks)
    seconds["zip"] = time.perf_counter() - start
    h5.unlink()
    digest = hashlib.sha256()
    start = time.perf_counter()
    with (
        extracted_member(archive, "pw", tmp, progress=False) as g2_file,
        h5py.File(g2_file) as g2,
    ):
        for pixels, masks in read_g2_rows(g2, np.arange(images), "G2.h5"):
            digest.update(pixels.tobytes())
            digest.update(masks.tobytes())
    seconds["read"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return seconds, archive.stat().st_size, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {w: {} for w in WAYS}
    sizes, digests = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for way in WAYS if round_ % 2 == 0 else list(WAYS)[::-1]:
                seconds, sizes[way], digests[way] = one_way(Path(tmp), args.images, WAYS[way])
                for phase, s in seconds.items():
                    times[way].setdefault(phase, []).append(s)
    if digests["released"] != digests["demo"]:
        raise SystemExit("the two ways read back different pixels")
    med = {w: {p: round(statistics.median(v), 2) for p, v in t.items()} for w, t in times.items()}
    print(json.dumps({
        "bench": "demo_release", "images": args.images, "rounds": args.rounds,
        **{f"{w}_{p}_s": s for w in WAYS for p, s in med[w].items()},
        **{f"{w}_zip_mb": round(sizes[w] / 2**20, 1) for w in WAYS},
        "same_pixels": True,
        "ratio": round(med["released"]["total"] / med["demo"]["total"], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
