"""Small benchmarks in the released layout, built with the project's writers, for the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from fashion.data.attributes import CATEGORY
from fashion.data.captions import compose_caption
from fashion.data.release import ANNOTATIONS_REL, SPLIT_REL, ZIP_REL
from fashion.demo.release_writer import (
    write_annotations,
    write_encrypted_zip,
    write_g2_h5,
    write_split,
)

PASSWORD = "s3cret"
SIZE = 128


@dataclass
class Source:
    """What went into a built benchmark (0-based split rows)."""

    images: np.ndarray  # uint8 (n, H, W, 3)
    segmentation: np.ndarray  # uint8 (n, H, W)
    captions: list[str]
    names: list[str]
    word_ids: list[np.ndarray]
    codes: dict[str, np.ndarray]
    train: np.ndarray
    test: np.ndarray


def _transpose_mean(f: h5py.File) -> None:
    mean = f["ih_mean"][()]
    del f["ih_mean"]
    f["ih_mean"] = mean.transpose(0, 2, 1)


# G2.h5 files in another layout than the released one: edits of an open, writable file.
WRONG_LAYOUTS: dict[str, Callable[[h5py.File], None]] = {
    "ih not mean-subtracted": lambda f: f["ih"].write_direct(f["ih"][()] + f["ih_mean"][()]),
    "ih_mean stored (H, W)": _transpose_mean,
    "ih in 0..255": lambda f: f["ih"].write_direct(f["ih"][()] * 255),
    "ih_mean in 0..255": lambda f: f["ih_mean"].write_direct(f["ih_mean"][()] * 255),
}


def edit_g2(edit: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    """A `mutate_h5` for `build_benchmark` that applies `edit` to the written G2.h5."""

    def mutate(path: Path) -> None:
        with h5py.File(path, "a") as f:
            edit(f)

    return mutate


def noisy_figures(rng: np.random.Generator, n: int) -> np.ndarray:
    """uint8 (n, SIZE, SIZE, 3) noise on white, like studio photos of a figure: a pixel is white
    with probability 0.8 (0.1 in a tall band left of centre), else random. The mean image is far
    from its transpose, and transposing it clips many white and dark pixels."""
    white = np.full((SIZE, SIZE, 1), 0.8)
    white[SIZE // 8 :, SIZE // 6 : SIZE // 2] = 0.1
    noise = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    return np.where(rng.random((n, SIZE, SIZE, 1)) < white, np.uint8(255), noise)


def build_benchmark(
    root: Path,
    n: int = 12,
    *,
    encryption: str = "zipcrypto",
    password: str = PASSWORD,
    arcname: str = "G2.h5",
    ih_dtype: type = np.float32,
    seg_dtype: type = np.uint8,
    extra_h5_images: int = 0,
    mutate_h5: Callable[[Path], None] | None = None,
    seed: int = 0,
) -> Source:
    """Write `<root>/Img/G2.zip`, `Anno/language_original.mat`, `Eval/ind.mat` of `n` images.

    Images are random noise on white (`noisy_figures`): no symmetry, so any transposition or
    flip shows. `ih_mean` is their mean image, as in the real file. Every 4th image is a test
    image (interleaved, like the real split).
    """
    rng = np.random.default_rng(seed)
    n_h5 = n + extra_h5_images
    images = noisy_figures(rng, n_h5)
    segmentation = rng.integers(0, 7, (n_h5, SIZE, SIZE), dtype=np.uint8)
    mean = (images.mean(0) / 255).astype(np.float32)
    codes = {
        "gender": rng.integers(0, 2, n),
        "color": rng.integers(1, 18, n),
        "sleeve": rng.integers(1, 5, n),
        "category": rng.integers(1, 20, n),
    }
    captions = [
        compose_caption(*(int(codes[k][i]) for k in ("gender", "color", "sleeve", "category")))
        for i in range(n)
    ]
    folders = [f"Item_{CATEGORY[int(c)].title()}" for c in codes["category"]]
    names = [f"img/{folder}/img_{i + 1:08d}.jpg" for i, folder in enumerate(folders)]
    word_ids = [rng.integers(1, 540, rng.integers(5, 12)) for _ in range(n)]
    rows = np.arange(n)
    test, train = rows[rows % 4 == 0], rows[rows % 4 != 0]

    for rel in (ZIP_REL, ANNOTATIONS_REL, SPLIT_REL):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    h5 = root / "G2.h5.tmp"
    batches = ((images[i : i + 5] / 255, segmentation[i : i + 5]) for i in range(0, n_h5, 5))
    write_g2_h5(h5, n_h5, batches, mean, ih_dtype=ih_dtype, seg_dtype=seg_dtype)
    if mutate_h5:
        mutate_h5(h5)
    write_encrypted_zip(root / ZIP_REL, h5, arcname, password, encryption)
    h5.unlink()
    write_annotations(root / ANNOTATIONS_REL, captions, names, word_ids, codes)
    write_split(root / SPLIT_REL, train + 1, test + 1, rng.permutation(test) + 1)
    return Source(images[:n], segmentation[:n], captions, names, word_ids, codes, train, test)
