"""The prepared subset, `data/subset/{train,test}.h5`: the format every later stage reads.

Datasets (N rows each, one row per image, in ascending benchmark index, i.e. the split's order):
  images        uint8 (N, 128, 128, 3)  RGB, HWC, mean restored
  segmentation  uint8 (N, 128, 128)     0 background, 1 hair, 2 face, 3 upper clothes,
                                        4 lower clothes, 5 legs, 6 arms
  index         int64 (N,)              0-based row in the original benchmark
  name          str   (N,)              `nameList` entry, e.g. img/Sheer_Pleated-Front_Blouse/...
  caption       str   (N,)              `engJ` sentence
  gender, color, sleeve, category  int16 (N,)  raw codes (gender 0-based, others 1-based)
  word_ids      vlen int16 (N,)         `codeJ` word ids of the caption
  redress_target int64 (N,)             test.h5 only: the benchmark index of the image whose
                                        sentence is this image's redress target (`ind.mat`'s
                                        `test_set_pair_ind`; read with `fashion.data.pairs`)
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.data.attributes import ATTRIBUTES

SPLITS = ("train", "test")
TABLE_FIELDS = ("index", "name", "caption", *ATTRIBUTES)
REQUIRED = ("images", "segmentation", *TABLE_FIELDS, "word_ids")
STR_DTYPE = h5py.string_dtype("utf-8")


def subset_path(root: str | Path, split: str) -> Path:
    return Path(root) / f"{split}.h5"


def create_subset(
    f: h5py.File, n: int, table: dict[str, object], size: tuple[int, int] = (128, 128)
) -> tuple[h5py.Dataset, h5py.Dataset]:
    """Write the table fields of a new subset file; return the (empty) images and segmentation.

    `table` holds every `TABLE_FIELDS` entry (N values each) and `word_ids` (N int arrays).
    Pixels are chunked per image and deflated (level 1), so rows can be streamed in and read
    back one by one (`maxshape` only lets a chunked dataset have n=0 rows). Not lzf: its
    output varies from run to run (its hash table starts uninitialised), so the same subset
    got another hash and DVC re-ran every later stage on a machine that rebuilt it; deflate
    is as fast here and smaller (3,000 demo images: write 0.41 vs 0.40 s, read 0.73 vs 0.74 s,
    6.9 vs 11.4 MB).
    """
    compressed = {"compression": "gzip", "compression_opts": 1}
    images = f.create_dataset(
        "images", (n, *size, 3), np.uint8, chunks=(1, *size, 3), maxshape=(None, *size, 3),
        **compressed,
    )  # fmt: skip
    segmentation = f.create_dataset(
        "segmentation", (n, *size), np.uint8, chunks=(1, *size), maxshape=(None, *size),
        **compressed,
    )  # fmt: skip
    f.create_dataset("index", data=np.asarray(table["index"], dtype=np.int64))
    for key in ("name", "caption"):
        f.create_dataset(key, data=list(table[key]), dtype=STR_DTYPE)
    for key in ATTRIBUTES:
        f.create_dataset(key, data=np.asarray(table[key], dtype=np.int16))
    words = np.empty(n, dtype=object)
    for i, ids in enumerate(table["word_ids"]):  # one by one: equal lengths must not broadcast
        words[i] = np.asarray(ids, dtype=np.int16)
    f.create_dataset("word_ids", data=words, dtype=h5py.vlen_dtype(np.int16))
    return images, segmentation


def open_subset(path: str | Path) -> h5py.File:
    """Open a subset file read-only, checking that every dataset is there with one length."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: subset file not found (run the prepare stage)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise PipelineError(f"{path}: not a readable HDF5 file ({err})") from err
    missing = [k for k in REQUIRED if k not in f]
    if missing:
        f.close()
        raise PipelineError(f"{path}: missing datasets {missing}")
    lengths = {k: len(f[k]) for k in REQUIRED}
    if len(set(lengths.values())) != 1:
        f.close()
        raise PipelineError(f"{path}: datasets disagree in length: {lengths}")
    return f


def read_table(path: str | Path) -> pd.DataFrame:
    """Everything but the pixels, as a DataFrame (one row per image)."""
    with open_subset(path) as f:
        table = {k: f[k][()] for k in TABLE_FIELDS}
    for k in ("name", "caption"):
        table[k] = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in table[k]]
    return pd.DataFrame(table)


def read_images(path: str | Path, rows: np.ndarray | slice | None = None) -> np.ndarray:
    """uint8 (n, 128, 128, 3) images of the given rows (all when `rows` is None)."""
    return _read_rows(path, "images", rows)


def read_segmentation(path: str | Path, rows: np.ndarray | slice | None = None) -> np.ndarray:
    """uint8 (n, 128, 128) segmentation classes of the given rows (all when `rows` is None)."""
    return _read_rows(path, "segmentation", rows)


def _read_rows(path: str | Path, name: str, rows: np.ndarray | slice | None) -> np.ndarray:
    with open_subset(path) as f:
        data = f[name]
        if rows is None:
            return data[()]
        if isinstance(rows, slice):
            return data[rows]
        return read_dataset_rows(data, rows)


def read_dataset_rows(
    data: h5py.Dataset, rows: np.ndarray, gap: int = 64, span: int = 1024
) -> np.ndarray:
    """`data[rows]` for any order and repeats of `rows`, read as contiguous slices.

    h5py's point selection reads one chunk per row through a slow path (47 s for the demo's
    14,000 training images against 1.2 s for the whole file; `bench/read_rows.py`). So rows
    no more than `gap` apart are read as one slice of at most `span` rows and picked in
    memory: a dense selection costs about a whole-file read, a sparse one a chunk a row.
    """
    unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
    out = np.empty((len(unique), *data.shape[1:]), dtype=data.dtype)
    if len(unique) == 0:
        return out
    # a new slice starts where the gap to the previous row, or the slice's length, is too big
    starts = [0]
    for i in range(1, len(unique)):
        if unique[i] - unique[i - 1] > gap or unique[i] - unique[starts[-1]] >= span:
            starts.append(i)
    for start, end in zip(starts, [*starts[1:], len(unique)], strict=True):
        lo, hi = int(unique[start]), int(unique[end - 1]) + 1
        out[start:end] = data[lo:hi][unique[start:end] - lo]
    if len(unique) == len(inverse) and np.array_equal(unique, rows):
        return out  # already in order: no copy
    return out[inverse]


def sample_rows(n: int, size: int | str, seed: int, param: str | None = None) -> np.ndarray:
    """A fixed-seed sample of `size` rows out of `n` (all rows, in order, for "all"); a bad
    size's error names `param`, the params.yaml entry it came from."""
    if size == "all":
        return np.arange(n)
    size = int(size)
    if not 0 < size <= n:
        where = f"{PARAMS_FILE}: {param}: " if param else ""
        raise PipelineError(f"{where}sample size {size}: must be in 1..{n} or 'all'")
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
