"""The sampling and evaluation stages under two CPU processes (`accelerate launch`, gloo)
write what one process writes: the same PNGs, manifests, grids, metrics and reference
arrays, byte for byte; each process took a disjoint, non-empty share of the batches.

Both runs go through tests/sampling_processes_worker.py (the six stages in one project, a
stand-in Inception), with one thread a process, in copies of one tiny inpainting project.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_clip_gather import free_port
from test_inpaint_training import trained_project
from test_redress import add_tiny_clips

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests/sampling_processes_worker.py"
# several batches per model and per image set, the last one short
PARAMS = {"generate": {"batch_size": 2}, "redress": {"batch_size": 3},
          "reference": {"n_images": 4, "batch_size": 3}, "eval_clip": {"batch_size": 3},
          "evaluate": {"batch_size": 2, "skip_inception": False, "is_splits": 2,
                       "kid_subsets": 3}}  # fmt: skip
STAGES = ("reference", "eval_clip", "generate", "redress", "evaluate", "evaluate_redress")
OUTPUTS = ("data/reference", "metrics/clip.json", "plots/clip", "data/generated",
           "plots/generate", "data/redressed", "plots/redress", "metrics/generation.json",
           "metrics/redress.json", "plots/evaluate")  # fmt: skip


@pytest.fixture(scope="module")
def project(sd_finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny inpainting project (test_redress's) with two tiny CLIPs and smaller batches."""
    project = tmp_path_factory.mktemp("processes") / "p"
    shutil.copytree(trained_project(sd_finetuned_project, tmp_path_factory), project)
    add_tiny_clips(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for name, values in PARAMS.items():
        params[name].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def run_worker(project: Path, dest: Path, processes: int) -> tuple[Path, list[dict], str]:
    """The six stages in a copy of `project` at `dest` under `processes` processes:
    (the copy, each rank's record, the output)."""
    shutil.copytree(project, dest)
    records = dest.with_name(f"{dest.name}.records")
    records.mkdir()
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--main_process_port", free_port()]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "stages"), str(ROOT / "tests")])}  # fmt: skip
    done = subprocess.run(
        [*launch, str(WORKER), str(dest), str(records)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in range(processes)]
    return dest, ranks, done.stdout


def files(project: Path) -> dict[str, bytes]:
    """Every output file's bytes, by its path in the project (of a .npz: its arrays')."""
    out = {}
    for name in OUTPUTS:
        path = project / name
        for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            if f.suffix == ".npz":  # the zip records when it was written
                with np.load(f) as arrays:
                    out[str(f.relative_to(project))] = pickle.dumps(dict(arrays))
            else:
                out[str(f.relative_to(project))] = f.read_bytes()
    return out


def test_two_processes_write_what_one_process_writes(project: Path, tmp_path: Path) -> None:
    one, (single,), _ = run_worker(project, tmp_path / "one", 1)
    two, ranks, stdout = run_worker(project, tmp_path / "two", 2)

    assert single["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    for stage in STAGES:
        for rank in (0, 1):
            assert f"{stage}: process {rank} of 2 computed" in stdout
    # every share: the two ranks' parts are disjoint and together all of it, as one rank had
    assert len(ranks[0]["shares"]) == len(ranks[1]["shares"]) == len(single["shares"])
    for whole, *parts in zip(single["shares"], *(r["shares"] for r in ranks), strict=True):
        assert all(p["stage"] == whole["stage"] and p["items"] == whole["items"] for p in parts)
        mine = [p["mine"] for p in parts]
        assert not set(mine[0]) & set(mine[1])
        assert sorted(mine[0] + mine[1]) == sorted(whole["mine"]) == sorted(whole["items"])
    for stage in STAGES:  # each rank took a part of each stage's work
        assert all(any(p["mine"] for p in r["shares"] if p["stage"] == stage) for r in ranks), stage

    expected, got = files(one), files(two)
    assert sum(name.endswith(".png") for name in expected) > 20
    assert got.keys() == expected.keys()
    for name, content in expected.items():
        assert got[name] == content, name
    assert not (two / "data/generated.partial").exists()
    assert not (two / "data/redressed.partial").exists()
