"""The prepare stage, run as `python stages/prepare.py` in a temporary copy of the project."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from benchmark_builder import PASSWORD, WRONG_LAYOUTS, Source, build_benchmark, edit_g2
from fashion.data.pairs import redress_rows
from fashion.data.release import ANNOTATIONS_REL, SPLIT_REL, ZIP_REL
from fashion.data.subset import read_dataset_rows, read_images, read_table
from fashion.demo.release_writer import write_split

STAGES = Path(__file__).resolve().parents[1] / "stages"
ENV_VAR = "TEST_FASHION_ZIP_PASSWORD"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project copy with the stage scripts; the benchmark goes to `bench/` inside it."""
    shutil.copytree(STAGES, tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    write_params(tmp_path)
    return tmp_path


def write_params(project: Path, benchmark: dict | None = None, **prepare: object) -> None:
    params = {
        "benchmark": {"root": "bench", "password_env": ENV_VAR} | (benchmark or {}),
        "demo": {"password": PASSWORD},
        "prepare": {"n_train_images": "all", "n_test_images": "all", "seed": 0} | prepare,
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def run_prepare(project: Path, password: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if password is not None:
        env[ENV_VAR] = password
    return subprocess.run(
        [sys.executable, "stages/prepare.py"], cwd=project, env=env, capture_output=True, text=True
    )


def assert_subset_matches(project: Path, source: Source) -> None:
    for split, rows in (("train", source.train), ("test", source.test)):
        path = project / "data/subset" / f"{split}.h5"
        table = read_table(path)
        assert table["index"].tolist() == rows.tolist()
        np.testing.assert_array_equal(read_images(path), source.images[rows])
        with h5py.File(path) as f:
            np.testing.assert_array_equal(f["segmentation"][()], source.segmentation[rows])
            for got, want in zip(
                f["word_ids"][()], [source.word_ids[i] for i in rows], strict=True
            ):
                assert got.tolist() == want.tolist()
        assert table["caption"].tolist() == [source.captions[i] for i in rows]
        assert table["name"].tolist() == [source.names[i] for i in rows]
        for code, values in source.codes.items():
            assert table[code].tolist() == values[rows].tolist()


def assert_nothing_left(project: Path) -> None:
    data = project / "data"
    assert not (project / "data/subset").exists()
    assert not data.exists() or list(data.iterdir()) == []  # no temp extraction or subset


# --------------------------------------------------------------------------- success


def test_prepare_restores_the_source_images_exactly_zipcrypto(project: Path) -> None:
    source = build_benchmark(project / "bench", n=13)
    result = run_prepare(project)
    assert result.returncode == 0, result.stderr
    assert_subset_matches(project, source)
    assert sorted(p.name for p in (project / "data").iterdir()) == ["subset"]  # temp removed


def test_prepare_reads_aes_float64_int_segmentation_in_a_folder_with_env_password(
    project: Path,
) -> None:
    source = build_benchmark(
        project / "bench",
        n=9,
        encryption="aes",
        password="from-the-env",
        arcname="Fashion Synthesis Benchmark/G2.h5",
        ih_dtype=np.float64,
        seg_dtype=np.int32,
    )
    result = run_prepare(project, password="from-the-env")
    assert result.returncode == 0, result.stderr
    assert_subset_matches(project, source)


def test_prepare_reads_integer_valued_float64_segmentation(project: Path) -> None:
    source = build_benchmark(project / "bench", n=9, seg_dtype=np.float64)
    result = run_prepare(project)
    assert result.returncode == 0, result.stderr
    assert_subset_matches(project, source)  # the same subset as an integer b_ gives


def test_seeded_subsets_are_deterministic_and_disjoint(project: Path) -> None:
    source = build_benchmark(project / "bench", n=40)  # 30 train, 10 test

    def subset(seed: int) -> tuple[list[int], list[int]]:
        write_params(project, n_train_images=6, n_test_images=3, seed=seed)
        result = run_prepare(project)
        assert result.returncode == 0, result.stderr
        return tuple(
            read_table(project / "data/subset" / f"{s}.h5")["index"].tolist()
            for s in ("train", "test")
        )

    train, test = subset(seed=1)
    files = {s: (project / "data/subset" / f"{s}.h5").read_bytes() for s in ("train", "test")}
    assert (len(train), len(test)) == (6, 3)
    assert set(train) <= set(source.train.tolist()) and set(test) <= set(source.test.tolist())
    assert not set(train) & set(test)
    assert train == sorted(train)
    assert subset(seed=1) == (train, test)
    # byte for byte: a machine that rebuilds the subset gets DVC's hash again (lzf did not)
    assert all((project / "data/subset" / f"{s}.h5").read_bytes() == b for s, b in files.items())
    assert subset(seed=2) != (train, test)


def test_the_test_subset_holds_each_images_redress_target(project: Path) -> None:
    """Known answer: ind.mat lists the test images out of order, each with a chosen target;
    the subset rows pair up by benchmark index, and a sampled subset keeps whole pairs only."""
    build_benchmark(project / "bench", n=16)  # test images 0, 4, 8, 12
    test, targets = [8, 0, 12, 4], [0, 12, 12, 8]  # test_ind order; 12 keeps its own sentence
    train = [i for i in range(16) if i % 4]
    split = [np.add(part, 1) for part in (train, test, targets)]
    write_split(project / "bench" / SPLIT_REL, *split)
    assert run_prepare(project).returncode == 0
    source_rows, target_rows = redress_rows(project / "data/subset/test.h5")
    index = read_table(project / "data/subset/test.h5")["index"].to_numpy()  # 0, 4, 8, 12
    pairs = dict(zip(index[source_rows].tolist(), index[target_rows].tolist(), strict=True))
    assert pairs == {0: 12, 4: 8, 8: 0, 12: 12}

    write_params(project, n_test_images=2, seed=3)
    assert run_prepare(project).returncode == 0
    index = read_table(project / "data/subset/test.h5")["index"].to_numpy()
    source_rows, target_rows = redress_rows(project / "data/subset/test.h5")
    kept = dict(zip(index[source_rows].tolist(), index[target_rows].tolist(), strict=True))
    assert kept == {k: v for k, v in pairs.items() if k in index and v in index}


# --------------------------------------------------------------------------- bad input


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_field(path: Path, field: str) -> None:
    mat = scipy.io.loadmat(path)
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__") and k != field})


def _rewrite_split(path: Path, train: list[int], test: list[int]) -> None:
    write_split(path, np.array(train), np.array(test), np.array(test))


def _set_b_(f: h5py.File, value: float) -> None:
    f["b_"][5, 0, 3, 4] = value


BAD_INPUTS = {
    # name: (how to break the benchmark after building it, build options, message)
    "wrong password": (None, {"password": "another"}, "wrong password for {root}/Img/G2.zip"),
    "missing root": (lambda r: shutil.rmtree(r), {}, "{root}: benchmark root not found"),
    "missing folder": (lambda r: shutil.rmtree(r / "Anno"), {}, "{root}/Anno: folder missing"),
    "missing file": (lambda r: (r / SPLIT_REL).unlink(), {}, "{root}/Eval/ind.mat: file missing"),
    "zip without G2.h5": (None, {"arcname": "G3.h5"}, "{root}/Img/G2.zip: no G2.h5 in the archive"),
    "truncated zip": (
        lambda r: _truncate(r / ZIP_REL),
        {},
        "{root}/Img/G2.zip: unreadable zip, truncated",
    ),
    "truncated h5": (
        None,
        {"mutate_h5": _truncate},
        "{root}/Img/G2.zip:G2.h5: not a readable HDF5 file, truncated",
    ),
    "mat missing a field": (
        lambda r: _drop_field(r / ANNOTATIONS_REL, "codeJ"),
        {},
        "{root}/Anno/language_original.mat: missing field(s) ['codeJ']",
    ),
    "index out of range": (
        lambda r: _rewrite_split(r / SPLIT_REL, [2, 3, 99], [1, 4]),
        {},
        "{root}/Eval/ind.mat: 'train_ind' index 99 out of range 1..8",
    ),
    "overlapping split": (
        lambda r: _rewrite_split(r / SPLIT_REL, [2, 3, 4], [1, 4]),
        {},
        "{root}/Eval/ind.mat: train_ind and test_ind overlap in 1 images",
    ),
    "redress target outside test": (
        lambda r: write_split(r / SPLIT_REL, np.array([2, 3]), np.array([1, 4]), np.array([4, 2])),
        {},
        "{root}/Eval/ind.mat: 'test_set_pair_ind' entry 2 points to image 2, which is not a "
        "test image",
    ),
    "h5 and annotations disagree": (
        None,
        {"extra_h5_images": 2},
        "{root}/Img/G2.zip:G2.h5 holds 10 images but {root}/Anno/language_original.mat describes 8",
    ),
    "non-integer segmentation": (
        None,
        {"seg_dtype": np.float64, "mutate_h5": edit_g2(lambda f: _set_b_(f, 2.5))},
        "{root}/Img/G2.zip:G2.h5: 'b_' holds non-integer value 2.5 (row 5, 0-based)",
    ),
    "segmentation class out of range": (
        None,
        {"mutate_h5": edit_g2(lambda f: _set_b_(f, 7))},
        "{root}/Img/G2.zip:G2.h5: 'b_' holds class 7 (row 5, 0-based), expected 0..6",
    ),
    **{
        layout: (
            None,
            {"mutate_h5": edit_g2(WRONG_LAYOUTS[layout])},
            "{root}/Img/G2.zip:G2.h5: the first 8 images do not restore to the expected layout",
        )
        for layout in ("ih not mean-subtracted", "ih_mean stored (H, W)", "ih in 0..255")
    },
    "n_train_images larger than the split": (
        "n_train_images",
        {},
        "{root}/Eval/ind.mat: prepare.n_train_images=7 but the split has only 6 images",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_1_naming_the_file_and_leaves_nothing(project: Path, case: str) -> None:
    breaker, options, message = BAD_INPUTS[case]
    root = project / "bench"
    build_benchmark(root, n=8, **options)  # 6 train, 2 test
    if breaker == "n_train_images":
        write_params(project, n_train_images=7)
    elif breaker is not None:
        breaker(root)
    result = run_prepare(project, password=options.get("password") and PASSWORD)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert message.format(root="bench") in result.stderr
    assert_nothing_left(project)


def test_zip_checksum_is_checked_when_given(project: Path) -> None:
    build_benchmark(project / "bench", n=8)
    digest = hashlib.sha256((project / "bench" / ZIP_REL).read_bytes()).hexdigest()
    write_params(project, benchmark={"zip_sha256": digest})
    assert run_prepare(project).returncode == 0
    write_params(project, benchmark={"zip_sha256": "0" * 64})
    shutil.rmtree(project / "data/subset")
    result = run_prepare(project)
    assert result.returncode == 1
    assert "bench/Img/G2.zip: SHA-256" in result.stderr and "corrupt or incomplete" in result.stderr
    assert_nothing_left(project)


def test_a_failed_run_keeps_the_previous_subset(project: Path) -> None:
    build_benchmark(project / "bench", n=8)
    assert run_prepare(project).returncode == 0
    before = (project / "data/subset" / "train.h5").read_bytes()
    assert run_prepare(project, password="wrong").returncode == 1
    assert (project / "data/subset" / "train.h5").read_bytes() == before
    assert sorted(p.name for p in (project / "data").iterdir()) == ["subset"]


@pytest.mark.parametrize("gap", [0, 3, 64])
def test_subset_rows_are_read_in_any_order_with_repeats(tmp_path: Path, gap: int) -> None:
    path = tmp_path / "rows.h5"
    values = np.random.default_rng(0).integers(0, 255, (300, 4, 4, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=values, chunks=(1, 4, 4, 3), compression="gzip")
    rng = np.random.default_rng(1)
    selections = [
        np.arange(300),  # all, in order
        np.sort(rng.choice(300, 40, replace=False)),  # sparse
        rng.integers(0, 300, 500),  # unsorted, repeated
        np.array([299, 0, 299]),
        np.array([], dtype=np.int64),
    ]
    with h5py.File(path, "r") as f:
        for rows in selections:
            got = read_dataset_rows(f["images"], rows, gap=gap, span=50)
            np.testing.assert_array_equal(got, values[rows])
