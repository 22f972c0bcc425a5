"""scripts/seed_table.py on real DVC experiments: mean ± sd per metric across seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run

SCRIPT = ROOT / "scripts" / "seed_table.py"
# a stage whose metrics depend on the seed: r1 = 0.5 + seed / 10, with a fixed-width interval
STAGE = """import json, yaml
seed = yaml.safe_load(open("params.yaml"))["training"]["seed"]
r1 = 0.5 + seed / 10
json.dump({"finetuned": {"r1": r1, "r1_ci95_low": r1 - 0.04, "r1_ci95_high": r1 + 0.04,
           "count": 7}, "environment": {"threads": 2 + seed}}, open("metrics.json", "w"))
"""


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("seeds")
    (project / "train.py").write_text(STAGE)
    (project / "params.yaml").write_text("training:\n  seed: 0\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    deps: [train.py]\n"
        "    params: [training.seed]\n    metrics:\n      - metrics.json:\n          cache: false\n"
    )
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["git", "add", "-A"], project)
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"]
    run(commit, project)
    for seed in (0, 1, 2):
        run(["dvc", "exp", "run", "-n", f"seed{seed}", "-S", f"training.seed={seed}"], project)
    return project


def test_the_table_gives_mean_and_sd_across_the_seeds(seeds: Path) -> None:
    out = run([sys.executable, str(SCRIPT)], seeds).stdout.splitlines()
    assert out[0] == "| metric | mean ± sd (3 runs) | seed0 | seed1 | seed2 | a run's 95% CI ± |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out[2:]}
    # r1: 0.5, 0.6, 0.7 -> mean 0.6, sd 0.1; each run's interval is ± 0.04
    assert rows["metrics.json:finetuned.r1"] == (
        "| metrics.json:finetuned.r1 | 0.600 ± 0.100 | 0.500 | 0.600 | 0.700 | 0.040 |"
    )
    assert rows["metrics.json:finetuned.count"].endswith(
        "| 7.000 ± 0.000 | 7.000 | 7.000 | 7.000 |  |"
    )
    assert not any("ci95" in key or "environment" in key for key in rows)  # numbers only


def test_named_experiments_and_a_match_narrow_the_table(seeds: Path, tmp_path: Path) -> None:
    shown = tmp_path / "shown.json"
    shown.write_text(run(["dvc", "exp", "show", "--json"], seeds).stdout)
    cmd = [sys.executable, str(SCRIPT), "seed0", "seed2", "--json", str(shown), "--match", "r1"]
    out = run(cmd, tmp_path).stdout.splitlines()
    assert out[2:] == ["| metrics.json:finetuned.r1 | 0.600 ± 0.141 | 0.500 | 0.700 | 0.040 |"]
    missing = run(
        [sys.executable, str(SCRIPT), "seed7", "--json", str(shown)], tmp_path, check=False
    )
    assert missing.returncode == 1 and "no finished experiment named ['seed7']" in missing.stderr


def test_the_readme_command_queues_one_experiment_per_seed(seeds: Path) -> None:
    """The sweep syntax the README shows queues three experiments (not run here)."""
    run(["dvc", "exp", "run", "--queue", "-S", "training.seed=3,4,5"], seeds)
    status = run(["dvc", "queue", "status"], seeds).stdout
    assert status.count("Queued") == 3, status
    params = json.loads(run(["dvc", "exp", "show", "--json"], seeds).stdout)
    queued = [
        rev["data"]["params"]["params.yaml"]["data"]["training"]["seed"]
        for commit in params
        for exp in commit.get("experiments") or []
        for rev in exp["revs"]
        if (exp.get("executor") or {}).get("state") == "queued"
    ]
    assert sorted(queued) == [3, 4, 5]
    run(["dvc", "queue", "remove", "--queued"], seeds)
