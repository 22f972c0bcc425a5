"""The training stages under fp16 mixed precision, as a T4 (Colab's GPU) runs them: fp16
autocast and a grad scaler (`fp16_like_a_gpu` in conftest.py turns on on the CPU what
accelerate does on a GPU). Each trains, draws its validation images, checkpoints the grad
scaler with the rest and resumes from it; bf16 (no scaler) has its tests beside each stage's
others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import base_clip
import eval_clip
import finetune_clip
from conftest import Fp16Record
from test_clip_stages import make_project, stage
from test_inpaint_training import LIVE as INPAINT_LIVE
from test_inpaint_training import run as run_finetune_inpaint
from test_inpaint_training import set_params as set_inpaint_params
from test_sd_training import project_with_base, resumed_from, run_finetune, set_params


def checkpoints(stage_name: str) -> dict[str, list[str]]:
    root = Path("checkpoints") / stage_name
    return {p.name: sorted(f.name for f in p.iterdir()) for p in root.glob("step_*")}


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_finetune_sd(
    sd_base_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fp16_like_a_gpu: Fp16Record,
    mode: str,
) -> None:
    """Full fine-tuning (text encoder too) and LoRA: fp32 trained weights under fp16
    autocast; the scaler unscales their gradients before clipping (it refuses fp16 ones)."""
    project = project_with_base(
        sd_base_project, tmp_path / "p", mode=mode, train_text_encoder=mode == "full",
        steps=2, schedule_steps=3, checkpoint_every=1, eval_every=2,
    )  # fmt: skip
    run_finetune(project, monkeypatch)
    assert fp16_like_a_gpu.autocast_reached_every_trained_model()
    saved = checkpoints("finetune_sd")
    assert sorted(saved) == ["step_0000001", "step_0000002"]
    assert all("scaler.pt" in files for files in saved.values())
    assert len(list(Path("dvclive/finetune_sd/plots/images/validation").glob("*.png"))) == 1

    set_params(steps=3)
    run_finetune(project, monkeypatch)
    assert resumed_from() == 2
    weights = Path("models/sd") / (
        "pytorch_lora_weights.safetensors"
        if mode == "lora"
        else "unet/diffusion_pytorch_model.safetensors"
    )
    assert all(t.dtype == torch.float32 for t in load_file(weights).values())


def test_finetune_inpaint(
    sd_finetuned_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fp16_like_a_gpu: Fp16Record,
) -> None:
    project = tmp_path / "p"
    shutil.copytree(sd_finetuned_project, project)
    set_inpaint_params(project, steps=2, schedule_steps=3, checkpoint_every=1, eval_every=2)
    run_finetune_inpaint(project, monkeypatch)
    assert fp16_like_a_gpu.autocast_reached_every_trained_model()
    saved = checkpoints("finetune_inpaint")
    assert sorted(saved) == ["step_0000001", "step_0000002"]
    assert all("scaler.pt" in files for files in saved.values())
    assert len(list((INPAINT_LIVE / "plots/images/validation").glob("*.png"))) == 1

    set_inpaint_params(project, steps=3)
    run_finetune_inpaint(project, monkeypatch)
    assert "resumed_from: 2" in (INPAINT_LIVE / "params.yaml").read_text()


def test_finetune_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture, fp16_like_a_gpu: Fp16Record
) -> None:
    project = make_project(tmp_path / "clip")
    stage(project, base_clip)
    stage(project, finetune_clip)
    assert fp16_like_a_gpu.autocast_reached_every_trained_model()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        saved = checkpoints("finetune_clip")
    assert sorted(saved) == ["step_0000003", "step_0000006"]
    assert all("scaler.pt" in files for files in saved.values())
    validation = project / "dvclive/finetune_clip/plots/metrics/val/caption_r1.tsv"
    assert len(validation.read_text().splitlines()) == 3  # header, steps 3 and 6

    shutil.rmtree(project / "checkpoints/finetune_clip/step_0000006")
    capsys.readouterr()
    stage(project, finetune_clip)
    assert "resumed from the step 3 checkpoint" in capsys.readouterr().out
    stage(project, eval_clip)
    assert (project / "metrics/clip.json").is_file()
