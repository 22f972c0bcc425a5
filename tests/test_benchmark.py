"""The benchmark format: writers match the real files, readers round-trip and reject bad input."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from benchmark_builder import PASSWORD, WRONG_LAYOUTS, build_benchmark
from fashion.core.stage import PipelineError
from fashion.data.attributes import ATTRIBUTES
from fashion.data.decrypt import extracted_member
from fashion.data.release import (
    ANNOTATIONS_REL,
    SPLIT_REL,
    benchmark_paths,
    check_g2_layout,
    open_g2,
    read_annotations,
    read_g2_rows,
    read_split,
    restore_images,
)
from fashion.demo.codes import sample_codes
from fashion.demo.drawing import draw_garments
from fashion.demo.release_writer import (
    write_annotations,
    write_encrypted_zip,
    write_g2_h5,
    write_split,
)

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "deepfashion"
needs_real = pytest.mark.skipif(
    not (REAL / "language_original.mat").is_file(),
    reason="real annotation files not found at ../shared/deepfashion",
)


def _fields(path: Path) -> dict[str, tuple[str, int]]:
    """Field -> (loaded dtype, ndim): the shape of a .mat file as scipy sees it."""
    mat = scipy.io.loadmat(path)
    return {k: (v.dtype.str, v.ndim) for k, v in mat.items() if not k.startswith("__")}


# --------------------------------------------------------------------------- writers vs real


@needs_real
def test_written_annotations_have_the_real_fields_and_dtypes(tmp_path: Path) -> None:
    build_benchmark(tmp_path, n=8)
    ours, real = tmp_path / ANNOTATIONS_REL, REAL / "language_original.mat"
    assert _fields(ours) == _fields(real)
    mine, theirs = scipy.io.loadmat(ours), scipy.io.loadmat(real)
    assert [k for k in mine if not k.startswith("__")] == [
        k for k in theirs if not k.startswith("__")
    ]
    for cell in ("engJ", "nameList", "codeJ"):
        assert mine[cell].shape[1] == 1
        assert mine[cell][0, 0].ndim == theirs[cell][0, 0].ndim
        assert mine[cell][0, 0].dtype.kind == theirs[cell][0, 0].dtype.kind
    assert mine["img_root"][0] == theirs["img_root"][0]
    # word ids above 255 are stored as uint16, as MATLAB did in the real file
    assert {m.dtype for m in mine["codeJ"][:, 0]} <= {np.dtype(np.uint8), np.dtype(np.uint16)}


@needs_real
def test_written_split_has_the_real_fields_and_dtypes(tmp_path: Path) -> None:
    build_benchmark(tmp_path, n=8)
    assert _fields(tmp_path / SPLIT_REL) == _fields(REAL / "ind.mat")


def test_write_split_refuses_zero_based_indices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-based"):
        write_split(tmp_path / "ind.mat", np.array([0, 1]), np.array([2]), np.array([2]))


# --------------------------------------------------------------------------- real files


@needs_real
def test_reads_the_real_annotations_and_split() -> None:
    ann = read_annotations(REAL / "language_original.mat")
    assert len(ann) == 78979
    assert ann.captions[0] == "the lady was wearing a blue long-sleeved blouse."
    assert ann.names[0] == "img/Sheer_Pleated-Front_Blouse/img_00000001.jpg"
    assert set(np.unique(ann.codes["gender"])) == {0, 1}
    assert ann.codes["category"].min() == 1 and ann.codes["category"].max() == 19
    assert max(int(ids.max()) for ids in ann.word_ids) == 539
    split = read_split(REAL / "ind.mat", len(ann))
    assert (len(split.train), len(split.test), len(split.test_pair)) == (70000, 8979, 8979)
    assert split.test[0] == 0 and split.train[0] == 257  # 1-based 1 and 258
    assert np.isin(split.test_pair, split.test).all()


# --------------------------------------------------------------------------- .mat readers


@pytest.mark.parametrize("dtype", [np.float64, np.uint8, np.int32, np.uint16])
def test_split_reader_accepts_any_numeric_dtype(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "ind.mat"
    scipy.io.savemat(
        path,
        {
            "train_ind": np.array([[2], [3], [5]], dtype=dtype),
            "test_ind": np.array([[1], [4]], dtype=dtype),
            "test_set_pair_ind": np.array([[4], [1]], dtype=dtype),
        },
    )
    split = read_split(path, 5)
    assert split.train.tolist() == [1, 2, 4] and split.test.tolist() == [0, 3]
    assert split.test_pair.tolist() == [3, 0]


def test_annotation_reader_accepts_double_codes(tmp_path: Path) -> None:
    path = tmp_path / "lang.mat"
    codes = {k: np.array([1.0, 2.0]) for k in ("gender", "color", "sleeve", "category")}
    write_annotations(path, ["a.", "b."], ["img/X_Tee/1.jpg", "img/X_Tee/2.jpg"], [[1], [2]], codes)
    mat = scipy.io.loadmat(path)
    mat["color_"] = mat["color_"].astype(np.float64)
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    ann = read_annotations(path)
    assert ann.codes["color"].tolist() == [1, 2] and ann.codes["color"].dtype == np.int64
    assert ann.captions == ["a.", "b."]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"train_ind": [[2], [9]]}, "'train_ind' index 9 out of range 1..5"),
        ({"test_ind": [[0], [1]]}, "'test_ind' index 0 out of range"),
        ({"test_ind": [[1], [2]]}, "overlap"),
        ({"train_ind": [[2.5], [3]]}, "non-integer"),
        ({"test_set_pair_ind": None}, "missing field(s) ['test_set_pair_ind']"),
    ],
)
def test_split_reader_rejects_bad_indices(tmp_path: Path, fields: dict, message: str) -> None:
    content = {"train_ind": [[2], [3]], "test_ind": [[1], [4]], "test_set_pair_ind": [[1], [4]]}
    content |= fields
    path = tmp_path / "ind.mat"
    scipy.io.savemat(path, {k: np.array(v) for k, v in content.items() if v is not None})
    with pytest.raises(PipelineError, match=r"ind\.mat") as err:
        read_split(path, 5)
    assert message in str(err.value)


def test_annotation_reader_names_missing_fields_and_length_mismatches(tmp_path: Path) -> None:
    build_benchmark(tmp_path, n=6)
    path = tmp_path / ANNOTATIONS_REL
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    scipy.io.savemat(path, {k: v for k, v in mat.items() if k != "sleeve_"})
    with pytest.raises(
        PipelineError, match=r"language_original\.mat: missing field\(s\) \['sleeve_'\]"
    ):
        read_annotations(path)
    scipy.io.savemat(path, mat | {"color_": mat["color_"][:-1]})
    with pytest.raises(PipelineError, match=r"language_original\.mat: fields disagree in length"):
        read_annotations(path)
    path.write_bytes(b"not a mat file at all")
    with pytest.raises(PipelineError, match=r"language_original\.mat: not a readable MATLAB"):
        read_annotations(path)


def test_benchmark_paths_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="benchmark root not found"):
        benchmark_paths(tmp_path / "nowhere")
    build_benchmark(tmp_path, n=4)
    (tmp_path / SPLIT_REL).unlink()
    with pytest.raises(PipelineError, match=r"Eval/ind\.mat: file missing"):
        benchmark_paths(tmp_path)
    (tmp_path / "Eval").rmdir()
    with pytest.raises(PipelineError, match=r"Eval: folder missing"):
        benchmark_paths(tmp_path)


# --------------------------------------------------------------------------- the zip


@pytest.mark.parametrize("deflate", [True, False], ids=["deflated", "stored"])
@pytest.mark.parametrize("encryption", ["zipcrypto", "aes"])
@pytest.mark.parametrize("arcname", ["G2.h5", "Fashion Synthesis/G2.h5"])
def test_extracts_the_member_byte_for_byte(
    tmp_path: Path, encryption: str, arcname: str, deflate: bool
) -> None:
    member = tmp_path / "member.bin"
    payload = np.random.default_rng(1).integers(0, 50, 3_000_000, dtype=np.uint8).tobytes()
    member.write_bytes(payload)
    zip_path = tmp_path / "G2.zip"
    write_encrypted_zip(zip_path, member, arcname, PASSWORD, encryption, deflate=deflate)
    stored = zip_path.stat().st_size > len(payload)  # bytes below 50 deflate to ~3/4
    assert stored == (not deflate)
    out = tmp_path / "out"
    with extracted_member(zip_path, PASSWORD, out) as extracted:
        assert extracted.parent == out
        assert extracted.read_bytes() == payload
    assert list(out.iterdir()) == []  # the temporary extraction is removed


@pytest.mark.parametrize("encryption", ["zipcrypto", "aes"])
def test_wrong_password_fails_before_writing(tmp_path: Path, encryption: str) -> None:
    member = tmp_path / "member.bin"
    member.write_bytes(os.urandom(100_000))
    zip_path = tmp_path / "G2.zip"
    write_encrypted_zip(zip_path, member, "G2.h5", PASSWORD, encryption)
    out = tmp_path / "out"
    with (
        pytest.raises(PipelineError, match=f"wrong password for {zip_path}"),
        extracted_member(zip_path, "not-the-password", out),
    ):
        pass
    assert list(out.iterdir()) == []


def test_zip_problems_name_the_zip(tmp_path: Path) -> None:
    member = tmp_path / "member.bin"
    member.write_bytes(np.arange(500_000, dtype=np.float32).tobytes())
    zip_path = tmp_path / "G2.zip"
    write_encrypted_zip(zip_path, member, "other.h5", PASSWORD, "zipcrypto")
    with (
        pytest.raises(PipelineError, match=r"G2\.zip: no G2\.h5 in the archive"),
        extracted_member(zip_path, PASSWORD, tmp_path),
    ):
        pass
    write_encrypted_zip(zip_path, member, "G2.h5", PASSWORD, "zipcrypto")
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte of the encrypted data
    zip_path.write_bytes(bytes(data))
    with (
        pytest.raises(PipelineError, match=r"G2\.zip: corrupt"),
        extracted_member(zip_path, PASSWORD, tmp_path),
    ):
        pass
    zip_path.write_bytes(bytes(data[: len(data) // 2]))
    with (
        pytest.raises(PipelineError, match=r"G2\.zip: unreadable zip, truncated"),
        extracted_member(zip_path, PASSWORD, tmp_path),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G2.zip", "member.bin"]


# --------------------------------------------------------------------------- G2.h5


def test_restore_images_adds_the_mean_and_fixes_the_axis_order() -> None:
    rgb = np.zeros((1, 4, 6, 3), dtype=np.float32)  # H=4, W=6: not square, not symmetric
    rgb[0, 1, 5] = [1.0, 0.5, 0.0]  # row 1, column 5
    mean = np.full((4, 6, 3), 0.25, dtype=np.float32)
    ih = (rgb - mean).transpose(0, 3, 2, 1)  # released order (N, 3, W, H)
    restored = restore_images(ih, mean.transpose(2, 1, 0))
    assert restored.shape == (1, 4, 6, 3)
    assert restored[0, 1, 5].tolist() == [255, 128, 0]
    assert restored.sum() == 255 + 128


@pytest.mark.parametrize(
    ("ih_dtype", "seg_dtype"),
    [
        (np.float32, np.uint8),
        (np.float64, np.int32),
        (np.float64, np.int64),
        (np.float32, np.float64),  # MATLAB writes doubles by default
    ],
)
@pytest.mark.parametrize("deflate_chunks", [False, True], ids=["plain", "deflated"])
def test_g2_round_trip_is_exact(
    tmp_path: Path, ih_dtype: type, seg_dtype: type, deflate_chunks: bool
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 128, 128, 3), dtype=np.uint8)
    masks = rng.integers(0, 7, (7, 128, 128), dtype=np.uint8)
    mean = rng.random((128, 128, 3)).astype(np.float32)
    path = tmp_path / "G2.h5"
    batches = [(images[:3] / 255, masks[:3]), (images[3:] / 255, masks[3:])]
    write_g2_h5(
        path, 7, batches, mean, ih_dtype=ih_dtype, seg_dtype=seg_dtype,
        deflate_chunks=deflate_chunks,
    )  # fmt: skip
    with h5py.File(path) as f:
        assert f["ih"].dtype == ih_dtype and f["b_"].dtype == seg_dtype
        assert f["ih"].shape == (7, 3, 128, 128) and f["b_"].shape == (7, 1, 128, 128)
        assert f["ih"].chunks == (1, 3, 128, 128)
        assert f["ih"].compression == ("gzip" if deflate_chunks else None)
        assert f["b_"].compression == f["ih"].compression
        # the released order: ih[i] is the (3, W, H) transpose of the mean-subtracted image
        np.testing.assert_allclose(
            f["ih"][2], (images[2] / 255 - mean).transpose(2, 1, 0), atol=1e-6
        )
    rows = np.array([0, 2, 3, 6])  # dense and sparse reads
    with open_g2(path, "G2.h5", 7, Path("anno.mat")) as g2:
        got = list(read_g2_rows(g2, rows, "G2.h5", chunk=2))
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), images[rows])
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), masks[rows])


def test_open_g2_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "G2.h5"
    mean = np.zeros((128, 128, 3), dtype=np.float32)
    write_g2_h5(path, 2, [(np.zeros((2, 128, 128, 3)), np.zeros((2, 128, 128)))], mean)
    with pytest.raises(PipelineError, match="G2.h5 holds 2 images but anno.mat describes 3"):
        open_g2(path, "G2.h5", 3, Path("anno.mat")).__enter__()
    with h5py.File(path, "a") as f:
        del f["ih_mean"]
    with pytest.raises(PipelineError, match=r"G2\.h5: missing datasets \['ih_mean'\]"):
        open_g2(path, "G2.h5", 2, Path("anno.mat")).__enter__()
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"G2\.h5: not a readable HDF5 file, truncated"):
        open_g2(path, "G2.h5", 2, Path("anno.mat")).__enter__()


def _g2_with_classes(path: Path, b_: np.ndarray) -> None:
    """A 3-image G2.h5 whose segmentation is `b_` (3, 128, 128), stored as given."""
    mean = np.zeros((128, 128, 3), dtype=np.float32)
    write_g2_h5(path, 3, [(np.zeros((3, 128, 128, 3)), np.zeros((3, 128, 128)))], mean)
    with h5py.File(path, "a") as f:
        del f["b_"]
        f["b_"] = b_.transpose(0, 2, 1)[:, None]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2.5, "'b_' holds non-integer value 2.5 (row 1, 0-based)"),
        (np.nan, "'b_' holds non-integer value nan (row 1, 0-based)"),
        (7.0, "'b_' holds class 7.0 (row 1, 0-based), expected 0..6"),
        (-1.0, "'b_' holds class -1.0 (row 1, 0-based), expected 0..6"),
    ],
)
def test_segmentation_must_hold_classes_0_to_6(tmp_path: Path, value: float, message: str) -> None:
    path = tmp_path / "G2.h5"
    b_ = np.zeros((3, 128, 128))
    b_[1, 100, 3] = value
    _g2_with_classes(path, b_)
    with (
        open_g2(path, "G2.h5", 3, Path("anno.mat")) as g2,
        pytest.raises(PipelineError, match=r"^G2\.h5: ") as err,
    ):
        list(read_g2_rows(g2, np.arange(3), "G2.h5"))
    assert message in str(err.value)


def test_integer_segmentation_out_of_range_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "G2.h5"
    b_ = np.zeros((3, 128, 128), dtype=np.uint8)
    b_[2, 0, 0] = 9
    _g2_with_classes(path, b_)
    with (
        open_g2(path, "G2.h5", 3, Path("anno.mat")) as g2,
        pytest.raises(PipelineError, match=r"G2\.h5: 'b_' holds class 9 \(row 2, 0-based\)"),
    ):
        list(read_g2_rows(g2, np.arange(3), "G2.h5"))


def _demo_layout_g2(path: Path, n: int = 64) -> None:
    """A G2.h5 of demo drawings; ih_mean from other drawings, as the demo benchmark does."""
    rng = np.random.default_rng(0)
    codes = sample_codes(n + 128, rng)
    drawn = draw_garments(*(codes[k] for k in ATTRIBUTES), rng)
    images, masks = drawn[0][:n], drawn[1][:n]
    write_g2_h5(path, n, [(images, masks)], drawn[0][n:].mean(0))


@pytest.fixture(scope="module")
def demo_g2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "G2.h5"
    _demo_layout_g2(path)
    return path


def test_the_demo_layout_passes_the_layout_check(demo_g2: Path) -> None:
    with h5py.File(demo_g2) as g2:
        check_g2_layout(g2, "G2.h5")


@pytest.mark.parametrize("layout", list(WRONG_LAYOUTS))
def test_wrong_layouts_fail_the_layout_check(demo_g2: Path, tmp_path: Path, layout: str) -> None:
    path = tmp_path / "G2.h5"
    path.write_bytes(demo_g2.read_bytes())
    with h5py.File(path, "a") as f:
        WRONG_LAYOUTS[layout](f)
    numbers = r"\d+\.\d% of ih \+ ih_mean values .* mean image is \d+\.\d{3} from ih_mean"
    with (
        h5py.File(path) as g2,
        pytest.raises(
            PipelineError, match=rf"^G2\.h5: the first 64 images do not restore.*{numbers}"
        ),
    ):
        check_g2_layout(g2, "G2.h5")
