"""Write a demo copy of the Fashion Synthesis benchmark in the released layout and formats.

    data/demo_benchmark/Img/G2.zip                   encrypted (demo.password) zip holding G2.h5
    data/demo_benchmark/Anno/language_original.mat   captions, names, codeJ word ids, codes
    data/demo_benchmark/Eval/ind.mat                 1-based interleaved train/test split, pairs

Images are drawn garments that show their caption's attributes (`fashion.demo`), streamed
in batches so that memory stays flat up to the real 78,979 images.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from multiprocessing.pool import AsyncResult
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.release import ANNOTATIONS_REL, MEMBER, SPLIT_REL, ZIP_REL
from fashion.demo.captions import caption_model
from fashion.demo.codes import (
    folder_order,
    interleaved_split,
    pair_test_images,
    sample_codes,
)
from fashion.demo.drawing import draw_garments
from fashion.demo.release_writer import (
    write_annotations,
    write_encrypted_zip,
    write_g2_h5,
    write_split,
)

BATCH = 128
MEAN_SAMPLE = 256  # images drawn to estimate ih_mean
MIN_IMAGES = 20


def draw_batch(
    codes: dict[str, np.ndarray], seed: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray]:
    """One batch's drawings (a pool task): images and segmentation of `codes`' rows."""
    return draw_garments(*(codes[k] for k in ATTRIBUTES), np.random.default_rng(seed))


def image_batches(
    codes: dict[str, np.ndarray], seed: np.random.SeedSequence, processes: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The drawings of `codes`, in order, BATCH at a time, drawn by a pool of `processes`
    (default: one per core this process may use) while the caller writes. Each batch has
    its own seed, so the images do not depend on the number of processes. At most two
    batches a process are in flight, so memory stays flat however far drawing runs ahead."""
    n = len(codes["gender"])
    starts = range(0, n, BATCH)
    seeds = seed.spawn(len(starts))
    if not processes:  # the cores this process may run on (its affinity: Linux only)
        usable = getattr(os, "sched_getaffinity", None)
        processes = len(usable(0)) if usable else os.cpu_count() or 1
    with (
        multiprocessing.Pool(processes) as pool,
        tqdm(total=len(starts), desc="drawing", unit="batch") as bar,
    ):
        pending: deque[AsyncResult] = deque()
        for start, batch_seed in zip(starts, seeds, strict=True):
            rows = {k: v[start : start + BATCH] for k, v in codes.items()}
            pending.append(pool.apply_async(draw_batch, (rows, batch_seed)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
                bar.update()
        while pending:
            yield pending.popleft().get()
            bar.update()


def main(out: Path = Path("data/demo_benchmark")) -> None:
    demo = section(load_params(), "demo")  # its values checked by the params model
    n, seed, password = int(demo["n_images"]), int(demo["seed"]), demo["password"]
    encryption, attributes, phrasing = demo["encryption"], demo["attributes"], demo["phrasing"]
    seeds = np.random.SeedSequence(seed).spawn(6)
    draw_seed = seeds.pop(4)  # the drawings' (one child a batch); the others keep their slots
    codes_rng, names_rng, split_rng, caption_rng, mean_rng = map(np.random.default_rng, seeds)
    codes = sample_codes(n, codes_rng, attributes)
    order, names = folder_order(codes["category"], names_rng)
    codes = {k: v[order] for k, v in codes.items()}
    # phrasing "outfit": one phrasing per attribute combination (why: fashion.demo.captions)
    captions = caption_model().sample(*(codes[k] for k in ATTRIBUTES), caption_rng, phrasing)
    word_ids = [caption_model().word_ids(c) for c in captions]
    train, test = interleaved_split(n, split_rng)
    color, sleeve, category = (codes[k].astype(np.int64) for k in ("color", "sleeve", "category"))
    pairs = pair_test_images(test, (color * 100 + sleeve) * 100 + category, split_rng)

    sample = sample_codes(MEAN_SAMPLE, mean_rng, attributes)
    ih_mean = draw_garments(*(sample[k] for k in ATTRIBUTES), mean_rng)[0].mean(0)

    with atomic_path(out, is_dir=True) as tmp:
        for rel in (ZIP_REL, ANNOTATIONS_REL, SPLIT_REL):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        h5 = tmp / ZIP_REL.parent / MEMBER
        # The chunks are deflated while the pool draws, so the zip only stores and encrypts:
        # 32 s less than `zip` deflating the whole file on one core (bench/demo_release.py).
        write_g2_h5(h5, n, image_batches(codes, draw_seed), ih_mean, deflate_chunks=True)
        print(f"encrypting {h5.stat().st_size / 2**20:.0f} MB ({encryption})")
        write_encrypted_zip(tmp / ZIP_REL, h5, MEMBER, password, encryption, deflate=False)
        h5.unlink()
        write_annotations(tmp / ANNOTATIONS_REL, captions, names, word_ids, codes)
        write_split(tmp / SPLIT_REL, train + 1, test + 1, pairs + 1)
    print(f"{out}: {n} images ({len(train)} train, {len(test)} test)")


if __name__ == "__main__":
    run_stage(main)
