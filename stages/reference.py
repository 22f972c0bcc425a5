"""The real images' reference of `evaluate`, computed once and cached by DVC.

Runs after `prepare` and before any training. The matched set's real half: a fixed-seed
sample of `reference.n_images` images of the evaluated split (`split.evaluate`); `generate`
draws one image from each one's caption. Unless `evaluate.skip_inception` is set, it fetches
torch-fidelity's Inception-v3 weights the first time (hash checked, into the torch hub cache or
`evaluate.inception_weights`), so an offline machine fails in minutes rather than after hours
of training, and one Inception pass gives the sample's IS logits and pool features. The
memorisation reference: a fixed-seed sample of `reference.n_train_images` training images (train
less the evaluated split) at `reference.memorisation_size` px, a space no model was trained in.

Writes `data/reference/real.npz`: `split`, `rows` (rows of the split's subset file), `size`,
`real_size`, `train_pixels` (uint8) and, with Inception, `logits` (n, 1008) and `pool`
(n, 2048). Images are compared at the evaluation size, min(generate.resolution, real image
size), after the one resize pipeline of `fashion.metrics.image`. Under several processes
(`accelerate.launch`) each runs Inception on its share of whole batches; the main process
writes the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fashion.core.params import load_params, section
from fashion.core.processes import Processes
from fashion.core.stage import run_stage
from fashion.data.splits import matched_sample
from fashion.data.subset import read_images, sample_rows
from fashion.metrics.image import (
    inception_weights,
    load_inception,
    resize_images,
    save_arrays,
    shared_features,
)
from fashion.metrics.reference import evaluation_size

CHUNK = 2048  # train images read and shrunk at a time


def shrunk_images(path: Path, rows: np.ndarray, size: int) -> np.ndarray:
    """uint8 subset images of `rows` at `size` px, a chunk at a time in memory."""
    chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
    return np.concatenate([resize_images(read_images(path, c), size) for c in chunks])


def real_reference(params: dict[str, Any], subset: Path, out: Path) -> None:
    p, evaluate = section(params, "reference"), section(params, "evaluate")
    processes = Processes()  # each takes its share of the Inception batches; the main one writes
    matched = split = matched_sample(params, subset)
    size, real_size = evaluation_size(params, split.path)
    train_rows = split.training_rows[
        sample_rows(
            len(split.training_rows),
            p["n_train_images"],
            int(p["seed"]),
            "reference.n_train_images",
        )
    ]
    arrays = {
        "split": np.array(split.name),
        "rows": matched.rows,
        "size": np.array(size),
        "real_size": np.array(real_size),
    }
    with processes.state.main_process_first():  # one download, then the others read it
        weights = inception_weights(evaluate, "reference")
    if weights is not None:
        model = load_inception(weights, processes.device)
        images = resize_images(read_images(split.path, matched.rows), size)
        batch = int(p["batch_size"])
        logits, pool = shared_features(images, model, batch, processes.device, processes)
        arrays |= {"logits": logits.numpy(), "pool": pool.numpy()}
    print(processes.summary("reference"))
    if not processes.is_main:
        return
    arrays["train_pixels"] = shrunk_images(
        split.training_path, train_rows, int(p["memorisation_size"])
    )
    print(
        f"reference: {len(matched.rows)} {split.name} images at {size} px, "
        f"{len(train_rows)} training images at {p['memorisation_size']} px"
    )
    save_arrays(out, arrays)


def main(subset: Path = Path("data/subset"), out: Path = Path("data/reference/real.npz")) -> None:
    real_reference(load_params(), subset, out)


if __name__ == "__main__":
    run_stage(main)
