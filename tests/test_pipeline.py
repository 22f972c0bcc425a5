"""End to end: the real `dvc repro` on small params in a project copy, then DVC's own tools."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run
from test_standin_models import load_script

uncached = load_script(ROOT / "scripts" / "uncached_outputs.py")


def test_second_repro_does_nothing(pipeline: Path) -> None:
    out = run(["dvc", "repro"], pipeline).stdout
    assert "Running stage" not in out, out
    assert "up to date" in out


def test_status_clean_and_metrics_shown(pipeline: Path) -> None:
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], pipeline).stdout)
    files = next(iter(metrics.values()))["data"]
    assert any(name.endswith("labels.json") for name in files), files
    # an interval shows as columns beside its number (sibling keys, flattened by DVC)
    table = run(["dvc", "metrics", "show", "--md"], pipeline).stdout
    header = table.splitlines()[0]
    for column in ("finetuned.i2t.r1", "finetuned.i2t.r1_ci95_low", "finetuned.i2t.r1_ci95_high"):
        assert f"| {column} " in header, header


def test_plots_render(pipeline: Path, tmp_path: Path) -> None:
    """Every file the top-level plots name is one the pipeline wrote (test_report_page
    draws made-up files at these paths), each chart has rows, and the report page of these
    outputs renders in Chromium."""
    from test_report_page import chart_files, top_level_plots

    for name, definition in top_level_plots():
        paths = [name] if definition is None else list(chart_files(name, definition))
        for path in paths:
            assert (pipeline / path).exists(), f"dvc.yaml plot {name}: {path} not written"
    shown = json.loads(run(["dvc", "plots", "show", "--json"], pipeline).stdout)["data"]
    for name, definition in top_level_plots():
        if definition is not None:
            values = shown[name][0]["content"]["data"]["values"]
            assert values, f"{name}: no rows"

    # the report page of these outputs, as a person opens it (test_report_page)
    from test_report_page import assert_page_renders, report_page, skip_without_browser

    skip_without_browser()
    page = report_page.build_page(tmp_path / "page", pipeline)
    charts = sum(definition is not None for _, definition in top_level_plots())
    images = page.read_text().count("<img")
    assert images >= 20
    assert_page_renders(page, charts, images, tmp_path / "report.png")


def test_push_then_pull_into_fresh_clone_restores_outputs(pipeline: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--default", "--local", "store", str(remote)], pipeline)
    run(["dvc", "push"], pipeline)
    run(["git", "add", "-A"], pipeline)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], pipeline)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(pipeline), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--default", "--local", "store", str(remote)], clone)
    # data/subset is not pushed (push: false): prepare rebuilds it byte for byte, so it is
    # the one stage that runs again
    run(["dvc", "pull", "--allow-missing"], clone)
    assert (clone / "models" / "clip" / "config.json").is_file()
    assert not (clone / "data" / "subset").exists()
    out = run(["dvc", "repro"], clone).stdout
    assert re.findall(r"Running stage '(\w+)'", out) == ["prepare"], out
    assert run(["dvc", "status"], clone).stdout.strip().endswith("up to date."), out


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


def test_a_new_machine_without_commits_restores_the_uncached_outputs(
    pipeline: Path, tmp_path: Path
) -> None:
    """Colab's resume: the code from git, dvc.lock and the uncached outputs (metrics) from a
    folder on Drive, the rest pulled. Without the metrics DVC would run their stages again."""
    remote, drive = tmp_path / "remote", tmp_path / "drive"
    run(["dvc", "remote", "add", "--default", "--local", "vm", str(remote)], pipeline)
    run(["dvc", "push"], pipeline)
    script = [sys.executable, str(ROOT / "scripts" / "uncached_outputs.py")]
    saved = run([*script, "save", str(drive)], pipeline).stdout
    assert (drive / "metrics" / "generation.json").is_file(), saved
    assert (drive / "dvclive" / "finetune_sd" / "metrics.json").is_file(), saved

    vm = tmp_path / "vm"
    run(["git", "clone", "-q", str(pipeline), str(vm)], tmp_path)  # the code
    for output in uncached.uncached_outputs(vm):  # uncommitted (another test may commit them)
        if (vm / output).is_dir():
            shutil.rmtree(vm / output)
        else:
            (vm / output).unlink(missing_ok=True)
    shutil.copy(pipeline / "dvc.lock", vm / "dvc.lock")
    run(["dvc", "remote", "add", "--default", "--local", "vm", str(remote)], vm)
    run(["dvc", "pull", "--allow-missing"], vm)
    run(["dvc", "repro", "--single-item", "prepare"], vm)  # data/subset, rebuilt
    stale = run(["dvc", "status"], vm).stdout  # the metrics files are missing
    for output in ("dvclive/finetune_sd/metrics.json", "metrics/generation.json"):
        assert re.search(rf"deleted:\s+{output}", stale), stale

    run([*script, "restore", str(drive)], vm)
    assert run(["dvc", "status"], vm).stdout.strip().endswith("up to date."), stale
    assert "Running stage" not in run(["dvc", "repro"], vm).stdout
