"""The Fashion Synthesis benchmark in its released layout and formats: the readers.

    <root>/Img/G2.zip                     encrypted zip (ZipCrypto or WinZip-AES) holding G2.h5
    <root>/Anno/language_original.mat     MATLAB v5 captions, image names, word ids, codes
    <root>/Eval/ind.mat                   MATLAB v5 train/test split, 1-based indices

`G2.h5` holds `ih` (N, 3, W, H) float, mean-subtracted, the last two axes stored as
(W, H); `ih_mean` (3, W, H); `b_` (N, 1, W, H) segmentation in the same order, classes 0..6
stored as integers or integer-valued floats (MATLAB writes doubles). The RGB
image in [0, 1], HWC, is `clip(ih[i].transpose(2, 1, 0) + ih_mean.transpose(2, 1, 0), 0, 1)`.

Readers validate the real or demo files and raise `PipelineError` naming the file and the
problem. The writers of the same format are in `fashion.demo.release_writer`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from tqdm import tqdm

from fashion.core.stage import PipelineError
from fashion.data.attributes import SEGMENTATION

ZIP_REL = Path("Img/G2.zip")
ANNOTATIONS_REL = Path("Anno/language_original.mat")
SPLIT_REL = Path("Eval/ind.mat")
MEMBER = "G2.h5"
ENCRYPTIONS = ("zipcrypto", "aes")
IMG_ROOT = "~/link/alper/data/df1/Img/"

# Our code names -> the field names of language_original.mat.
MAT_CODE_FIELDS: dict[str, str] = {
    "category": "cate_new",
    "color": "color_",
    "gender": "gender_",
    "sleeve": "sleeve_",
}
SPLIT_FIELDS = ("train_ind", "test_ind", "test_set_pair_ind")

# The layout check on the first images of G2.h5 (`check_g2_layout`), measured on 128 demo
# images (share of ih + ih_mean values clipped / mean gap to ih_mean): right layout 0% / 0.013;
# ih not mean-subtracted 81% / 0.76; ih_mean transposed 7.5% / 0.013; ih in 0..255 97% / 3.4;
# ih_mean in 0..255 100% / 0.013. ih_mean's orientation and scale cannot show in the gap (the
# mean of ih is near 0 whatever ih_mean is): the clipped share catches them.
_CHECK_IMAGES = 128
# Values within 0.05 of [0, 1] are not counted: float rounding, and the overshoot of a few
# hundredths that resampling leaves at edges, are no sign of a wrong layout.
_CLIP_TOLERANCE = 0.05
# An exact restore clips nothing; 3% leaves room for stronger overshoot yet is well below what
# a transposed ih_mean clips (its pixels move by |M - M.T|: 0.11 on average on the real mean,
# above 0.1 on 40% of its pixels).
_MAX_CLIPPED_SHARE = 0.03
# The mean of mean-subtracted ih is near 0 (0.013 on the demo); 0.25 allows a first chunk of a
# few items (the file is ordered by item) and is far below a missing subtraction (the mean
# image itself: 0.84 on average on the real ih_mean) or a 0..255 scale.
_MAX_MEAN_GAP = 0.25


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class BenchmarkPaths:
    zip: Path
    annotations: Path
    split: Path


def benchmark_paths(root: str | Path) -> BenchmarkPaths:
    """The three files of a benchmark root, each checked to exist (error names what is missing)."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: benchmark root not found (set benchmark.root in params.yaml)")
    paths = BenchmarkPaths(root / ZIP_REL, root / ANNOTATIONS_REL, root / SPLIT_REL)
    for path in (paths.zip, paths.annotations, paths.split):
        if not path.parent.is_dir():
            raise PipelineError(f"{path.parent}: folder missing from the benchmark root")
        if not path.is_file():
            raise PipelineError(f"{path}: file missing from the benchmark root")
    return paths


def verify_sha256(path: Path, expected: str) -> None:
    """Check a file against its published SHA-256 (a corrupt or partial copy fails here)."""
    digest = hashlib.sha256()
    with (
        path.open("rb") as f,
        tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc=f"sha256 {path.name}"
        ) as bar,
    ):
        while block := f.read(8 << 20):
            digest.update(block)
            bar.update(len(block))
    if digest.hexdigest() != expected.strip().lower():
        raise PipelineError(
            f"{path}: SHA-256 {digest.hexdigest()} does not match benchmark.zip_sha256 "
            f"{expected} (corrupt or incomplete copy)"
        )


# --------------------------------------------------------------------------- .mat readers


def _load_mat(path: Path, fields: Iterable[str]) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, OSError... on bad files
        raise PipelineError(f"{path}: not a readable MATLAB v5 file ({err})") from err
    missing = [k for k in fields if k not in mat]
    if missing:
        raise PipelineError(f"{path}: missing field(s) {missing}")
    return mat


def _integers(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    """A numeric MATLAB column (double, uint8, int32...) as int64, rejecting non-integers."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise PipelineError(f"{path}: field '{name}' is not numeric ({values.dtype})")
    flat = values.reshape(-1)
    if values.dtype.kind == "f" and not np.array_equal(flat, np.round(flat)):
        raise PipelineError(f"{path}: field '{name}' holds non-integer values")
    return flat.astype(np.int64)


def _strings(path: Path, name: str, cell: np.ndarray) -> list[str]:
    out = []
    for item in np.asarray(cell).reshape(-1):
        item = np.asarray(item)
        if item.dtype.kind != "U":
            raise PipelineError(f"{path}: field '{name}' holds {item.dtype}, expected strings")
        out.append(str(item.reshape(-1)[0]) if item.size else "")
    return out


@dataclass(frozen=True)
class Annotations:
    """`language_original.mat`: one entry per benchmark image, in benchmark order."""

    captions: list[str]
    names: list[str]
    word_ids: list[np.ndarray]  # int64 word ids of each caption
    codes: dict[str, np.ndarray]  # "gender", "color", "sleeve", "category" -> int64 (N,)

    def __len__(self) -> int:
        return len(self.captions)


def read_annotations(path: str | Path) -> Annotations:
    path = Path(path)
    mat = _load_mat(path, ["engJ", "nameList", "codeJ", *MAT_CODE_FIELDS.values()])
    captions = _strings(path, "engJ", mat["engJ"])
    names = _strings(path, "nameList", mat["nameList"])
    word_ids = [_integers(path, "codeJ", ids) for ids in mat["codeJ"].reshape(-1)]
    codes = {ours: _integers(path, f, mat[f]) for ours, f in MAT_CODE_FIELDS.items()}
    lengths = {"engJ": len(captions), "nameList": len(names), "codeJ": len(word_ids)}
    lengths |= {MAT_CODE_FIELDS[k]: len(v) for k, v in codes.items()}
    if len(set(lengths.values())) != 1:
        raise PipelineError(f"{path}: fields disagree in length: {lengths}")
    return Annotations(captions, names, word_ids, codes)


@dataclass(frozen=True)
class Split:
    """`ind.mat` as 0-based benchmark rows."""

    train: np.ndarray
    test: np.ndarray
    test_pair: np.ndarray  # for each test image, a test image described by another sentence


def read_split(path: str | Path, n_images: int) -> Split:
    """Read and check `ind.mat` (1-based, any numeric dtype) for a benchmark of `n_images`."""
    path = Path(path)
    mat = _load_mat(path, SPLIT_FIELDS)
    parts = {}
    for name in SPLIT_FIELDS:
        one_based = _integers(path, name, mat[name])
        bad = one_based[(one_based < 1) | (one_based > n_images)]
        if bad.size:
            raise PipelineError(
                f"{path}: '{name}' index {bad[0]} out of range 1..{n_images} "
                f"({bad.size} out of range)"
            )
        if name != "test_set_pair_ind" and len(np.unique(one_based)) != len(one_based):
            raise PipelineError(f"{path}: '{name}' repeats indices")
        parts[name] = one_based - 1
    overlap = np.intersect1d(parts["train_ind"], parts["test_ind"])
    if overlap.size:
        raise PipelineError(
            f"{path}: train_ind and test_ind overlap in {overlap.size} images "
            f"(e.g. index {overlap[0] + 1})"
        )
    return Split(parts["train_ind"], parts["test_ind"], parts["test_set_pair_ind"])


# --------------------------------------------------------------------------- G2.h5


@contextmanager
def open_g2(path: Path, label: str, n_images: int, annotations: Path) -> Iterator[h5py.File]:
    """Open an extracted G2.h5 (`label` names it in errors) and check it against the annotations."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise PipelineError(
            f"{label}: not a readable HDF5 file, truncated or corrupt ({err})"
        ) from err
    with f:
        missing = [k for k in ("ih", "ih_mean", "b_") if k not in f]
        if missing:
            raise PipelineError(f"{label}: missing datasets {missing}")
        ih, mean, seg = f["ih"], f["ih_mean"], f["b_"]
        if ih.ndim != 4 or ih.shape[1] != 3 or ih.dtype.kind != "f":
            raise PipelineError(
                f"{label}: 'ih' is {ih.dtype} {ih.shape}, expected float (N, 3, W, H)"
            )
        if mean.shape != ih.shape[1:]:
            raise PipelineError(f"{label}: 'ih_mean' is {mean.shape}, expected {ih.shape[1:]}")
        want = (len(ih), 1, *ih.shape[2:])
        if seg.shape != want or seg.dtype.kind not in "iuf":  # MATLAB writes doubles
            raise PipelineError(
                f"{label}: 'b_' is {seg.dtype} {seg.shape}, expected integer or float {want}"
            )
        if len(ih) != n_images:
            raise PipelineError(
                f"{label} holds {len(ih)} images but {annotations} describes {n_images}"
            )
        yield f


def check_g2_layout(g2: h5py.File, label: str, n: int = _CHECK_IMAGES) -> None:
    """Check that the first `n` images restore to [0, 1] and average to `ih_mean`, and that
    their segmentation holds classes.

    Run before the full pass, so a file in another layout (ih not mean-subtracted, ih_mean
    transposed, another scale) stops in seconds. Thresholds: see `_CHECK_IMAGES`.
    """
    try:
        restored = np.asarray(g2["ih"][:n], dtype=np.float32)
        mean = np.asarray(g2["ih_mean"][()], dtype=np.float32)
        segmentation_classes(g2["b_"][:n, 0], np.arange(len(restored)), label)
    except OSError as err:
        raise PipelineError(f"{label}: unreadable data, truncated or corrupt ({err})") from err
    if not len(restored):
        return
    restored += mean
    outside = (restored < -_CLIP_TOLERANCE) | (restored > 1 + _CLIP_TOLERANCE)
    clipped = float(outside.mean())
    gap = float(np.abs(restored.mean(0) - mean).mean())  # = mean |mean of ih| per pixel
    if not (clipped <= _MAX_CLIPPED_SHARE and gap <= _MAX_MEAN_GAP):  # `not <=` catches NaN
        raise PipelineError(
            f"{label}: the first {len(restored)} images do not restore to the expected layout: "
            f"{clipped:.1%} of ih + ih_mean values lie over {_CLIP_TOLERANCE} outside [0, 1] "
            f"(at most {_MAX_CLIPPED_SHARE:.0%} expected) and their mean image is {gap:.3f} "
            f"from ih_mean on average (at most {_MAX_MEAN_GAP} expected); ih must be "
            "mean-subtracted, in [0, 1] units, with ih_mean in the same (3, W, H) order"
        )


def segmentation_classes(b_: np.ndarray, rows: np.ndarray, label: str) -> np.ndarray:
    """uint8 classes of a chunk of `b_` (any numeric dtype), rejecting non-integers and
    classes outside `SEGMENTATION`; `rows` are the chunk's benchmark rows, for the error."""
    if b_.dtype.kind == "f":
        fractional = b_ != np.rint(b_)  # NaN too
        if fractional.any():
            first = np.unravel_index(np.argmax(fractional), b_.shape)
            raise PipelineError(
                f"{label}: 'b_' holds non-integer value {b_[first]} (row {rows[first[0]]}, "
                "0-based); segmentation classes are integers"
            )
    top = max(SEGMENTATION)
    outside = (b_ < 0) | (b_ > top)
    if outside.any():
        first = np.unravel_index(np.argmax(outside), b_.shape)
        raise PipelineError(
            f"{label}: 'b_' holds class {b_[first]} (row {rows[first[0]]}, 0-based), "
            f"expected 0..{top}"
        )
    return b_.astype(np.uint8)


def restore_images(ih: np.ndarray, ih_mean: np.ndarray) -> np.ndarray:
    """(b, 3, W, H) mean-subtracted floats -> uint8 (b, H, W, 3) RGB: add the mean, fix the axes."""
    # In place and in the stored layout; only the final uint8 array is transposed (fastest).
    rgb = ih + ih_mean
    np.clip(rgb, 0.0, 1.0, out=rgb)
    rgb *= 255
    np.rint(rgb, out=rgb)
    return np.ascontiguousarray(rgb.astype(np.uint8).transpose(0, 3, 2, 1))


def read_g2_rows(
    g2: h5py.File, rows: np.ndarray, label: str, chunk: int = 128
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 (b, H, W, 3) images, uint8 (b, H, W) segmentation) for sorted unique `rows`.

    Reads `chunk` images at a time, so memory stays flat however many rows there are.
    """
    ih, seg = g2["ih"], g2["b_"]
    mean = g2["ih_mean"][()].astype(np.result_type(ih.dtype, np.float32))
    try:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            lo, hi = int(part[0]), int(part[-1]) + 1
            if hi - lo == len(part):  # a run of rows
                pixels, masks = ih[lo:hi], seg[lo:hi]
            elif hi - lo <= 2 * len(part):  # dense: one contiguous read beats point selection
                pixels, masks = ih[lo:hi][part - lo], seg[lo:hi][part - lo]
            else:
                pixels, masks = ih[part], seg[part]
            classes = segmentation_classes(masks[:, 0], part, label)
            yield restore_images(pixels, mean), classes.transpose(0, 2, 1)
    except OSError as err:
        raise PipelineError(f"{label}: unreadable data, truncated or corrupt ({err})") from err
