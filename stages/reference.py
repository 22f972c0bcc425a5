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

from fashion.core.params import load_params, section
from fashion.core.stage import run_stage
from fashion.data.subset import read_images, subset_path
from fashion.metrics.image import (
    extract_features,
    fetch_inception_weights,
    load_inception,
    resize_images,
    save_arrays,
)
from fashion.metrics.reference import compute_device, evaluation_size, reference_rows


def inception_reference(params: dict[str, Any], subset: Path, out: Path) -> None:
    p, evaluate = section(params, "reference"), section(params, "evaluate")
    test = subset_path(subset, "test")
    size, real_size = evaluation_size(params, test)
    rows = reference_rows(test, p["n_real"], int(p["seed"]), "n_real")
    arrays = {"test_rows": rows, "size": np.array(size), "real_size": np.array(real_size)}
    if evaluate["skip_inception"]:
        print("no Inception reference (evaluate.skip_inception is true)")
    else:
        weights = fetch_inception_weights(evaluate["inception_weights"])
        device = compute_device()
        model = load_inception(weights, device)
        images = resize_images(read_images(test, rows), size)
        logits, pool = extract_features(images, model, int(p["batch_size"]), device)
        arrays |= {"logits": logits.numpy(), "pool": pool.numpy()}
        print(f"Inception reference: {len(rows)} test images at {size} px")
    save_arrays(out, arrays)


def main(
    subset: Path = Path("data/subset"), out: Path = Path("data/reference/inception.npz")
) -> None:
    inception_reference(load_params(), subset, out)


if __name__ == "__main__":
    run_stage(main)
