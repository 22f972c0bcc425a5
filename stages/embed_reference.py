"""The real images' CLIP reference of `evaluate`, cached by DVC for each fine-tuned CLIP.

Embeds, with the fine-tuned CLIP, the real test sample of the Inception reference
(`stages/reference.py`) and a fixed-seed sample of train images (the memorisation reference),
at the same evaluation size. Writes `data/reference/clip.npz`: `test_rows`, `train_rows`,
`size`, and the normalised embeddings `test` and `train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPModel, CLIPProcessor

from fashion.clip.models import embed_images, load_clip
from fashion.core.params import load_params, section
from fashion.core.stage import run_stage
from fashion.data.subset import read_images, subset_path
from fashion.metrics.image import resize_images, save_arrays
from fashion.metrics.reference import compute_device, evaluation_size, reference_rows

CHUNK = 2048  # images read, resized and embedded at a time


def embed_rows(
    clip: tuple[CLIPModel, CLIPProcessor], path: Path, rows: np.ndarray, size: int, batch: int
) -> np.ndarray:
    """Normalised CLIP embeddings of subset images at `size`, a chunk at a time in memory."""
    model, processor = clip
    chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
    return torch.cat(
        [
            embed_images(
                model, processor, resize_images(read_images(path, c), size), batch,
                compute_device(),
            )
            for c in tqdm(chunks, desc=f"embed {path.stem}")
        ]
    ).numpy()


def clip_reference(params: dict[str, Any], subset: Path, clip_dir: Path, out: Path) -> None:
    p = section(params, "reference")
    seed, batch = int(p["seed"]), int(p["batch_size"])
    test, train = subset_path(subset, "test"), subset_path(subset, "train")
    size, _ = evaluation_size(params, test)
    test_rows = reference_rows(test, p["n_real"], seed, "n_real")
    train_rows = reference_rows(train, p["n_train"], seed, "n_train")
    model, processor = load_clip(clip_dir)
    clip = (model.to(compute_device()), processor)
    save_arrays(
        out,
        {
            "test_rows": test_rows,
            "train_rows": train_rows,
            "size": np.array(size),
            "test": embed_rows(clip, test, test_rows, size, batch),
            "train": embed_rows(clip, train, train_rows, size, batch),
        },
    )
    print(f"CLIP reference: {len(test_rows)} test, {len(train_rows)} train images at {size} px")


def main(
    subset: Path = Path("data/subset"),
    clip: Path = Path("models/clip"),
    out: Path = Path("data/reference/clip.npz"),
) -> None:
    clip_reference(load_params(), subset, clip, out)


if __name__ == "__main__":
    run_stage(main)
