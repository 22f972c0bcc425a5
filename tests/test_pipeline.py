"""End to end: the real `dvc repro` on small params in a project copy, then DVC's own tools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run


def test_second_repro_does_nothing(pipeline: Path) -> None:
    out = run(["dvc", "repro"], pipeline).stdout
    assert "Running stage" not in out, out
    assert "up to date" in out


def test_status_clean_and_metrics_shown(pipeline: Path) -> None:
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], pipeline).stdout)
    files = next(iter(metrics.values()))["data"]
    assert any(name.endswith("labels.json") for name in files), files


def test_plots_render(pipeline: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(out_dir)], pipeline)
    html = (out_dir / "index.html").read_text()
    assert "<img" in html or "vega" in html.lower()


def test_push_then_pull_into_fresh_clone_restores_outputs(pipeline: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--default", "--local", "store", str(remote)], pipeline)
    run(["dvc", "push"], pipeline)
    run(["git", "add", "-A"], pipeline)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], pipeline)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(pipeline), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--default", "--local", "store", str(remote)], clone)
    run(["dvc", "pull"], clone)
    assert (clone / "data" / "subset" / "train.h5").is_file()
    out = run(["dvc", "repro"], clone).stdout
    assert "Running stage" not in out, out


@pytest.mark.slow
def test_experiments_with_other_generation_params_show_in_metrics_diff(
    pipeline: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(pipeline, project, symlinks=True)
    run(["git", "add", "-A"], project)  # experiments start from a commit with the run's lock
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty"]
    run([*commit, "-qm", "run"], project)

    runs = {}
    for name, guidance in (("low", 1.0), ("high", 9.0)):
        cmd = ["dvc", "exp", "run", "-n", name, "-S", f"generate.guidance_scale={guidance}"]
        runs[name] = run(cmd, project).stdout
    for out in runs.values():  # only the stages downstream of the changed param re-run
        assert "Running stage 'generate'" in out and "Running stage 'evaluate'" in out, out
        assert "Running stage 'finetune_sd'" not in out, out

    diff = json.loads(run(["dvc", "metrics", "diff", "low", "high", "--json"], project).stdout)
    changed = diff["metrics/generation.json"]  # only the metrics that differ are listed
    assert any(key.startswith("matched.finetuned.") for key in changed), changed
    assert all(v["old"] != v["new"] for v in changed.values()), changed
    params = json.loads(run(["dvc", "params", "diff", "low", "high", "--json"], project).stdout)
    guidance = params["params.yaml"]["generate.guidance_scale"]
    assert (guidance["old"], guidance["new"]) == (1.0, 9.0)
