"""finetune_sd resumed at its last step from the checkpoint mirror (a fresh machine after a
run that stopped once its last checkpoint was mirrored): the stage ends at once and writes
the uninterrupted run's model. finetune_inpaint trains through the same loop
(`fashion.sd.loop`) and the same `Checkpoints`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_sd_training import project_with_base, resumed_from, run_finetune


def model_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {
        f"{path.relative_to(folder)}:{name}": tensor
        for path in sorted(folder.rglob("*.safetensors"))
        for name, tensor in load_file(path).items()
    }


def test_finetune_sd_resumed_at_its_last_step_from_the_mirror_writes_its_model(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "drive" / "finetune_sd"
    project = project_with_base(
        sd_base_project, tmp_path / "p", steps=2, checkpoint_every=1,
        validation_prompts=[], checkpoint_mirror=str(mirror),
    )  # fmt: skip
    run_finetune(project, monkeypatch)
    uninterrupted = model_weights(project / "models/sd")
    for lost in ("checkpoints", "models/sd", "dvclive"):  # the local disk is gone
        shutil.rmtree(project / lost)
    run_finetune(project, monkeypatch)
    assert resumed_from() == 2
    resumed = model_weights(project / "models/sd")
    assert resumed.keys() == uninterrupted.keys() and resumed
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
