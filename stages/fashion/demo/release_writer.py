"""Writers of the benchmark's released formats (see `fashion.data.release`): the demo
benchmark and the test fixtures are written in exactly the real layout."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pyzipper
import scipy.io

from fashion.core.stage import PipelineError
from fashion.data.release import ENCRYPTIONS, IMG_ROOT, MAT_CODE_FIELDS, SPLIT_FIELDS

# --------------------------------------------------------------------------- writers


def write_g2_h5(
    path: Path,
    n: int,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    ih_mean_hwc: np.ndarray,
    *,
    ih_dtype: np.dtype | type = np.float32,
    seg_dtype: np.dtype | type = np.uint8,
    deflate_chunks: bool = False,
) -> None:
    """Stream `n` images into a G2.h5 in the released layout (one HDF5 chunk per image).

    `batches` yields (images float in [0, 1], (b, H, W, 3) HWC RGB; segmentation (b, H, W)).
    `ih_mean_hwc` is the (H, W, 3) mean image subtracted from every image, as in `ih_mean.mat`.
    `deflate_chunks`: each chunk deflated (level 1, the floats' bytes shuffled first), which
    h5py reads transparently; the released file's chunks are not.
    """
    mean = np.asarray(ih_mean_hwc, dtype=np.float32).transpose(2, 1, 0)  # (3, W, H)
    size = mean.shape[1:]
    with h5py.File(path, "w") as f:
        f.create_dataset("ih_mean", data=mean)
        deflate = {"compression": "gzip", "compression_opts": 1} if deflate_chunks else {}
        ih = f.create_dataset(
            "ih", (n, 3, *size), ih_dtype, chunks=(1, 3, *size), shuffle=deflate_chunks, **deflate
        )
        seg = f.create_dataset("b_", (n, 1, *size), seg_dtype, chunks=(1, 1, *size), **deflate)
        done = 0
        for images, masks in batches:
            b = len(images)
            if done + b > n:
                raise ValueError(f"{path}: batches hold more than n={n} images")
            chw = np.asarray(images, dtype=np.float32).transpose(0, 3, 2, 1)  # (b, 3, W, H)
            ih[done : done + b] = (chw - mean).astype(ih_dtype)
            seg[done : done + b] = np.asarray(masks).transpose(0, 2, 1)[:, None].astype(seg_dtype)
            done += b
        if done != n:
            raise ValueError(f"{path}: batches held {done} images, expected n={n}")


def _cell_column(items: Sequence[object]) -> np.ndarray:
    """A MATLAB (N, 1) cell array."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _word_id_column(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids).reshape(-1, 1)
    # MATLAB stores the doubles in the smallest integer type that holds them (as the real file).
    return ids.astype(np.uint8 if ids.size == 0 or ids.max() < 256 else np.uint16)


def write_annotations(
    path: Path,
    captions: Sequence[str],
    names: Sequence[str],
    word_ids: Sequence[np.ndarray],
    codes: Mapping[str, np.ndarray],
    img_root: str = IMG_ROOT,
) -> None:
    """Write `language_original.mat` (MATLAB v5, compressed) with every field of the real file.

    `codes` maps "gender" (0-based), "color", "sleeve", "category" (1-based) to (N,) arrays.
    Loaded with `scipy.io.loadmat` it gives what the real file gives: `engJ`, `nameList`,
    `codeJ` (N, 1) cells (strings; uint8/uint16 (k, 1) word ids); uint8 (N, 1) codes; `img_root`.
    """
    n = len(captions)
    if len(names) != n or len(word_ids) != n:
        raise ValueError(f"{path}: {n} captions, {len(names)} names, {len(word_ids)} word id rows")
    fields: dict[str, object] = {"engJ": _cell_column(list(captions))}
    for ours, mat in MAT_CODE_FIELDS.items():
        values = np.asarray(codes[ours]).reshape(-1, 1)
        if len(values) != n:
            raise ValueError(f"{path}: {len(values)} '{ours}' codes for {n} captions")
        fields[mat] = values.astype(np.uint8)
    fields["img_root"] = img_root
    fields["nameList"] = _cell_column(list(names))
    fields["codeJ"] = _cell_column([_word_id_column(ids) for ids in word_ids])
    scipy.io.savemat(path, fields, format="5", do_compression=True, oned_as="column")


def write_split(
    path: Path, train_ind: np.ndarray, test_ind: np.ndarray, test_pair_ind: np.ndarray
) -> None:
    """Write `ind.mat`. The indices are given as stored: 1-BASED rows of the benchmark.

    Stored as int32 (k, 1) columns `train_ind`, `test_ind`, `test_set_pair_ind`.
    """
    fields = {}
    for name, values in zip(SPLIT_FIELDS, (train_ind, test_ind, test_pair_ind), strict=True):
        values = np.asarray(values).reshape(-1, 1)
        if values.size and values.min() < 1:
            raise ValueError(f"{path}: {name} must be 1-based (found {values.min()})")
        fields[name] = values.astype(np.int32)
    scipy.io.savemat(path, fields, format="5", do_compression=True, oned_as="column")


def write_encrypted_zip(
    zip_path: Path,
    member: Path,
    arcname: str,
    password: str,
    encryption: str,
    *,
    deflate: bool = True,
) -> None:
    """Write a zip holding `member` as `arcname`, deflated (or stored, `deflate=False`) and
    encrypted with `password`.

    `encryption` is "zipcrypto" (the Info-ZIP `zip` tool; the stdlib cannot encrypt) or "aes"
    (pyzipper, WinZip-AES 256, compress_type 99). Both stream the member: big files are fine.
    """
    zip_path, member = Path(zip_path).absolute(), Path(member).absolute()
    zip_path.unlink(missing_ok=True)
    if encryption == "aes":
        compression = pyzipper.ZIP_DEFLATED if deflate else pyzipper.ZIP_STORED
        with pyzipper.AESZipFile(
            zip_path, "w", compression=compression, encryption=pyzipper.WZ_AES
        ) as zf:
            zf.setpassword(password.encode())
            zf.write(member, arcname)
    elif encryption == "zipcrypto":
        if shutil.which("zip") is None:
            raise PipelineError("ZipCrypto needs the `zip` tool (apt install zip), or use 'aes'")
        # `zip` names members by their path: link the member under `arcname` in a scratch dir.
        # Deflate level 1: 1.18x faster than the default 6 on demo drawings, 2% larger
        # (bench/demo_zip.py); level 0 stores.
        with tempfile.TemporaryDirectory(dir=zip_path.parent) as scratch:
            link = Path(scratch) / arcname
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(member)
            level = "-1" if deflate else "-0"
            command = ["zip", "-q", level, "-P", password, str(zip_path), arcname]
            subprocess.run(command, cwd=scratch, check=True)
    else:
        raise PipelineError(f"unknown encryption '{encryption}' (expected one of {ENCRYPTIONS})")
