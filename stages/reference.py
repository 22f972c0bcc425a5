"""The real images' Inception reference of `evaluate`, computed once and cached by DVC.

Runs after `prepare` and before any training. It fetches torch-fidelity's Inception-v3
weights the first time (hash checked, into the torch hub cache or `evaluate.inception_weights`),
so an offline machine fails in minutes rather than after hours of training. One Inception pass
over a fixed-seed sample of real test images then gives their IS logits and pool features.
Writes `data/reference/inception.npz`: `test_rows`, `size`, `real_size` and, unless
`evaluate.skip_inception` is set (then nothing is fetched), `logits` (n, 1008) and `pool`
(n, 2048). `stages/embed_reference.py` adds the CLIP half of the reference.

Images are compared at the evaluation size, min(generate.resolution, real image size), after
the one resize pipeline of `fashion.metrics.image`; `evaluate` checks that its images need
that size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashion.clip.data import sample_rows
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.subset import open_subset, read_images, subset_path
from fashion.metrics.image import (
    extract_features,
    fetch_inception_weights,
    load_inception,
    resize_images,
    save_arrays,
)

TEST, TRAIN = subset_path("data/subset", "test"), subset_path("data/subset", "train")
INCEPTION_REFERENCE = Path("data/reference/inception.npz")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def sample(path: Path, n: int | str, seed: int, param: str) -> np.ndarray:
    """Rows of a fixed-seed sample of a subset split (all rows, in order, for "all")."""
    with open_subset(path) as f:
        n_rows = len(f["images"])
    try:
        return sample_rows(n_rows, n, seed)
    except PipelineError as err:
        raise PipelineError(f"{PARAMS_FILE}: reference.{param}: {err}") from err


def evaluation_size(params: dict[str, Any]) -> tuple[int, int]:
    """(evaluation size, real image size): the smaller of the generated and real sizes."""
    real_size = read_images(TEST, slice(0, 1)).shape[1]
    return min(int(section(params, "generate")["resolution"]), real_size), real_size


def inception_reference(params: dict[str, Any]) -> None:
    p, evaluate = section(params, "reference"), section(params, "evaluate")
    size, real_size = evaluation_size(params)
    rows = sample(TEST, p["n_real"], int(p["seed"]), "n_real")
    arrays = {"test_rows": rows, "size": np.array(size), "real_size": np.array(real_size)}
    if evaluate["skip_inception"]:
        print("no Inception reference (evaluate.skip_inception is true)")
    else:
        weights = fetch_inception_weights(evaluate["inception_weights"])
        model = load_inception(weights, device())
        images = resize_images(read_images(TEST, rows), size)
        logits, pool = extract_features(images, model, int(p["batch_size"]), device())
        arrays |= {"logits": logits.numpy(), "pool": pool.numpy()}
        print(f"Inception reference: {len(rows)} test images at {size} px")
    save_arrays(INCEPTION_REFERENCE, arrays)


def main() -> None:
    inception_reference(load_params())


if __name__ == "__main__":
    run_stage(main)
