"""`data/subset` is not pushed to the DVC remote: prepare rebuilds it byte for byte, so on a
new machine the rebuilt subset has the hash in dvc.lock and no later stage runs again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from benchmark_builder import PASSWORD, build_benchmark
from conftest import ROOT, make_project_copy, run

STAGES = ROOT / "stages"


def test_prepare_rebuilds_the_subset_byte_for_byte(tmp_path: Path) -> None:
    shutil.copytree(STAGES, tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    params = {
        "benchmark": {"root": "bench", "password_env": "TEST_UNSET_PASSWORD"},
        "demo": {"password": PASSWORD},
        "prepare": {"n_train_images": "all", "n_test_images": "all", "seed": 0},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build_benchmark(tmp_path / "bench", n=13)
    built = []
    for out in ("first", "second"):  # seconds apart: a timestamp in the files would differ
        done = subprocess.run(
            [sys.executable, "stages/prepare.py", "--out", out],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        built.append({p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())})
    assert list(built[0]) == ["test.h5", "train.h5"]
    assert built[0] == built[1]


def test_the_subset_is_not_pushed_and_a_new_machine_rebuilds_only_it(tmp_path: Path) -> None:
    """dvc push leaves data/subset out; a fresh clone that pulls what was pushed and runs
    `dvc repro labels` runs prepare only (labels' input has its recorded hash)."""
    outs = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["prepare"]["outs"]
    assert outs == [{"${paths.subset}": {"push": False}}]
    params = {"demo": {"n_images": 64}}
    first = make_project_copy(tmp_path / "first", params)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--default", "store", str(remote)], first)
    run(["dvc", "repro", "labels"], first, timeout=600)
    pushed = run(["dvc", "push"], first)
    lock = yaml.safe_load((first / "dvc.lock").read_text())["stages"]
    subset = lock["prepare"]["outs"][0]["md5"]  # "<md5>.dir"
    labels = lock["labels"]["outs"][0]["md5"]
    in_remote = {p.parent.name + p.name for p in (remote / "files/md5").glob("*/*")}
    assert labels in in_remote and subset not in in_remote, pushed.stdout

    fresh = make_project_copy(tmp_path / "fresh", params)
    shutil.copy(first / "dvc.lock", fresh / "dvc.lock")
    # metrics are not cached (cache: false): the clone carries them, as it carries dvc.lock
    shutil.copytree(first / "metrics", fresh / "metrics")
    run(["dvc", "remote", "add", "--default", "store", str(remote)], fresh)
    run(["dvc", "pull", "--allow-missing"], fresh)
    assert (fresh / "data/labels/labels.csv").is_file()
    assert not (fresh / "data/subset").exists()
    rebuilt = run(["dvc", "repro", "labels"], fresh, timeout=600).stdout
    assert "Running stage 'prepare'" in rebuilt
    assert "Running stage 'labels'" not in rebuilt, rebuilt
    assert "Running stage 'demo_benchmark'" not in rebuilt, rebuilt
    status = run(["dvc", "status", "--json", "labels"], fresh).stdout
    assert json.loads(status) == {}
    assert (fresh / "dvc.lock").read_text() == (first / "dvc.lock").read_text()
