"""One param, `training.seed`, seeds every training stage; the other seeds stay fixed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run
from fashion.core.params import training_section
from fashion.core.stage import PipelineError

TRAINING_STAGES = {
    "base_clip", "finetune_clip", "base_sd", "finetune_sd", "reshape", "finetune_inpaint",
}  # fmt: skip


def test_the_training_seed_is_laid_into_a_training_stage_section() -> None:
    params = {"training": {"seed": 3}, "finetune_sd": {"lr": 0.1}}
    assert training_section(params, "finetune_sd") == {"lr": 0.1, "seed": 3}
    assert params["finetune_sd"] == {"lr": 0.1}  # the params are not changed


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"training": {"seed": 0}, "finetune_sd": {"seed": 1}}, "finetune_sd.seed is not a param"),
        ({"finetune_sd": {}}, "missing section 'training'"),
        ({"training": {"seed": -1}, "finetune_sd": {}}, "training.seed must be a non-negative"),
        ({"training": {"seed": "1"}, "finetune_sd": {}}, "training.seed must be a non-negative"),
        ({"training": {}, "finetune_sd": {}}, "got None"),
    ],
)
def test_a_bad_training_seed_gets_one_line_naming_it(params: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=re.escape(message)) as caught:
        training_section(params, "finetune_sd")
    assert str(caught.value).startswith("params.yaml: ") and "\n" not in str(caught.value)


def stages_reading_the_training_seed() -> set[str]:
    return {
        path.stem
        for path in (ROOT / "stages").glob("*.py")
        if "training_section(" in path.read_text()
    }


def test_exactly_the_stages_that_read_the_training_seed_declare_it() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {name for name, stage in stages.items() if "training.seed" in stage["params"]}
    assert declared == stages_reading_the_training_seed()
    assert declared == TRAINING_STAGES
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert all("seed" not in params[name] for name in declared)  # one seed, not six


def test_another_training_seed_changes_only_the_training_stages(
    pipeline: Path, tmp_path: Path
) -> None:
    """On a finished run, DVC sees the new seed in the training stages and nowhere else (the
    later stages re-run because their inputs change, not because of the param)."""
    project = tmp_path / "project"
    shutil.copytree(pipeline, project, symlinks=True)
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["training"]["seed"] = 1
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(run(["dvc", "status", "--json"], project).stdout))
    assert changed == TRAINING_STAGES
