"""finetune_sd: the VAE's input range, per-epoch mean loss, full weights, checkpoint + resume.

The resume rule: more steps with a fixed schedule_steps resume and match a fresh run; a new
cadence resumes; more steps with schedule_steps null, another lr or base model restart.
The checkpoint and batch machinery on its own: tests/test_training_toolkit.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

import finetune_sd
from fashion.core.stage import PipelineError
from fashion.data.subset import read_images, read_table
from fashion.sd.config import TrainConfig
from fashion.sd.models import load_base_sd, load_finetuned_sd, noise_scheduler
from fashion.sd.training import FineTuner, TrainData
from sd_testdata import update_sd_stage

METRICS = Path("dvclive/finetune_sd/plots/metrics/train")
CHECKPOINTS = Path("checkpoints/finetune_sd")


def checkpoint_names() -> list[str]:
    return sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir())


def set_params(**finetune: object) -> None:
    """Change finetune_sd params of the project in the working directory."""
    import yaml

    params = yaml.safe_load(Path("params.yaml").read_text())
    update_sd_stage(params, "finetune_sd", finetune)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def resumed_from() -> int:
    import yaml

    return yaml.safe_load(Path("dvclive/finetune_sd/params.yaml").read_text())["resumed_from"]


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def project_with_base(base: Path, dest: Path, **finetune: object) -> Path:
    """A copy of the base project with finetune_sd params changed."""
    import yaml

    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("checkpoints", "dvclive", "sd"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    update_sd_stage(params, "finetune_sd", finetune)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def run_finetune(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    AcceleratorState._reset_state(True)
    finetune_sd.main()


@pytest.mark.parametrize("cache_latents", [False, True])
def test_vae_sees_pixels_in_minus_one_one(
    sd_base_project: Path, monkeypatch: pytest.MonkeyPatch, cache_latents: bool
) -> None:
    monkeypatch.chdir(sd_base_project)
    AcceleratorState._reset_state(True)
    pipe = load_base_sd("models/base_sd")
    seen: list[torch.Tensor] = []
    encode = pipe.vae.encode
    monkeypatch.setattr(pipe.vae, "encode", lambda x, *a, **k: seen.append(x) or encode(x, *a, **k))
    images = read_images("data/subset/train.h5")
    images[:, :16, :16] = 0  # a black and a white corner in every image
    images[:, -16:, -16:] = 255
    cfg = TrainConfig(resolution=32, batch_size=8, cache_latents=cache_latents)
    data = TrainData(images, read_table("data/subset/train.h5")["caption"].tolist())
    tuner = FineTuner(pipe, noise_scheduler("models/base_sd/pipeline"), cfg, data, Accelerator())
    tuner.micro_batch(0, 0)
    pixels = torch.cat(seen)
    assert pixels.shape[1:] == (3, 32, 32)
    assert pixels.min() == -1.0 and pixels.max() == 1.0


def test_epoch_loss_is_the_mean_of_the_epoch(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 24 images less 4 of validation, batch 8: 2 full steps per epoch, 6 steps = 3 epochs
    project = project_with_base(sd_base_project, tmp_path / "p", steps=6, lr=1e-2)
    run_finetune(project, monkeypatch)
    steps = pd.read_csv(METRICS / "loss.tsv", sep="\t")
    epochs = pd.read_csv(METRICS / "epoch_loss.tsv", sep="\t")
    assert steps.step.tolist() == list(range(1, 7))  # optimiser steps done, as finetune_clip
    rates = pd.read_csv(METRICS.parent / "perf/images_per_s.tsv", sep="\t")
    assert rates.step.tolist() == list(range(1, 7)) and (rates.images_per_s > 0).all()
    assert epochs.step.tolist() == [2, 4, 6]
    assert json.loads(Path("dvclive/finetune_sd/metrics.json").read_text())["step"] == 6
    for end, mean in zip(epochs.step, epochs.epoch_loss, strict=True):
        losses = steps.loss[(steps.step > end - 2) & (steps.step <= end)]
        assert mean == pytest.approx(losses.mean(), rel=1e-6)
        assert mean != pytest.approx(losses.iloc[-1], rel=1e-6)  # not the last batch's
    assert len(list(Path("dvclive/finetune_sd/plots/images/validation").glob("*.png"))) == 3


def test_n_images_and_epochs_give_the_step_count(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 images at batch 2: 3 steps an epoch (2, 2 and a last, partial 1), 2 epochs
    project = project_with_base(
        sd_base_project, tmp_path / "p", n_images=5, batch_size=2, epochs=2, steps=None
    )
    run_finetune(project, monkeypatch)
    assert pd.read_csv(METRICS / "loss.tsv", sep="\t").step.tolist() == list(range(1, 7))
    assert pd.read_csv(METRICS / "epoch_loss.tsv", sep="\t").step.tolist() == [3, 6]
    assert checkpoint_names()[-1] == "step_0000006"


def test_full_model_saves_the_trained_weights(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_with_base(sd_base_project, tmp_path / "p", steps=2, mode="full")
    run_finetune(project, monkeypatch)
    tuned, base = load_finetuned_sd("models/sd", "models/base_sd"), load_base_sd("models/base_sd")
    assert (Path("models/sd") / "model_index.json").is_file()
    changed = [
        not torch.equal(p, q)
        for p, q in zip(tuned.unet.parameters(), base.unet.parameters(), strict=True)
    ]
    assert all(changed)  # every UNet tensor was trained
    te_changed = [
        not torch.equal(p, q)
        for p, q in zip(
            tuned.text_encoder.parameters(), base.text_encoder.parameters(), strict=True
        )
    ]
    assert any(te_changed)  # train_text_encoder: true by default


def test_more_steps_resume_and_match_a_fresh_run(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps rule: with schedule_steps set, 1 step then 2 equal 2 steps straight."""
    fixed = {"schedule_steps": 2, "validation_prompts": [], "lr_scheduler": "cosine"}
    straight = project_with_base(sd_base_project, tmp_path / "straight", steps=2, **fixed)
    run_finetune(straight, monkeypatch)
    resumed = project_with_base(sd_base_project, tmp_path / "resumed", steps=1, **fixed)
    run_finetune(resumed, monkeypatch)
    assert checkpoint_names() == ["step_0000001"]  # the last step's
    set_params(steps=2)
    run_finetune(resumed, monkeypatch)
    assert resumed_from() == 1
    assert pd.read_csv(METRICS / "loss.tsv", sep="\t").step.tolist() == [1, 2]  # appended
    assert checkpoint_names() == ["step_0000001", "step_0000002"]
    a = load_finetuned_sd(straight / "models/sd", straight / "models/base_sd").unet.state_dict()
    b = load_finetuned_sd("models/sd", "models/base_sd").unet.state_dict()
    diff = max_abs_diff(a, b)  # same schedule, batches, noise and optimiser state
    print(f"finetune_sd resumed vs fresh: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6


def test_changed_settings_do_not_resume(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    project = project_with_base(sd_base_project, tmp_path / "p", steps=1, validation_prompts=[])
    run_finetune(project, monkeypatch)
    set_params(lr=5e-4)
    capsys.readouterr()
    run_finetune(project, monkeypatch)
    assert "trained with another params.lr: starting afresh" in capsys.readouterr().out
    assert resumed_from() == 0
    assert json.loads((CHECKPOINTS / "fingerprint.json").read_text())["params"]["lr"] == 5e-4
    assert np.isfinite(pd.read_csv(METRICS / "loss.tsv", sep="\t").loss).all()


def test_another_mixed_precision_does_not_resume(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A bf16 checkpoint holds no grad scaler: an fp16 run that resumed it would stop on the
    missing scaler file, so another mixed precision starts afresh (fp32 checkpoints written
    before the key existed still resume: "no" is not in the fingerprint)."""
    project = project_with_base(sd_base_project, tmp_path / "p", steps=1, validation_prompts=[])
    run_finetune(project, monkeypatch)
    assert "mixed_precision" not in json.loads((CHECKPOINTS / "fingerprint.json").read_text())
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    capsys.readouterr()
    run_finetune(project, monkeypatch)
    assert "trained with another mixed_precision: starting afresh" in capsys.readouterr().out
    assert resumed_from() == 0
    run_finetune(project, monkeypatch)  # the same precision again resumes
    assert resumed_from() == 1


def test_resumed_ema_matches_a_fresh_run(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EMA is checkpointed and restored: 1 step then 2 save the EMA weights of 2 steps
    straight (the saved pipeline holds the EMA's weights)."""
    fixed = {"schedule_steps": 2, "validation_prompts": [], "ema": True, "ema_decay": 0.5}
    straight = project_with_base(sd_base_project, tmp_path / "straight", steps=2, **fixed)
    run_finetune(straight, monkeypatch)
    resumed = project_with_base(sd_base_project, tmp_path / "resumed", steps=1, **fixed)
    run_finetune(resumed, monkeypatch)
    set_params(steps=2)
    run_finetune(resumed, monkeypatch)
    assert resumed_from() == 1
    a = load_finetuned_sd(straight / "models/sd", straight / "models/base_sd").unet.state_dict()
    b = load_finetuned_sd("models/sd", "models/base_sd").unet.state_dict()
    assert max_abs_diff(a, b) <= 1e-6


def test_a_restored_ema_moves_to_the_training_device() -> None:
    """accelerate restores checkpointed objects onto the CPU; the EMA must follow the
    training device (on a GPU a CPU EMA would fail at its first step). `meta` stands in
    for the GPU here."""
    from diffusers.training_utils import EMAModel

    from fashion.sd.training import EmaOnDevice

    params = [torch.nn.Parameter(torch.ones(3))]
    state = EMAModel(params).state_dict()  # on the CPU, as accelerate loads it
    ema = EMAModel(params)
    EmaOnDevice(ema, "meta").load_state_dict(state)
    assert {p.device.type for p in ema.shadow_params} == {"meta"}


def test_a_new_cadence_resumes_and_more_steps_without_a_fixed_schedule_restart(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    project = project_with_base(sd_base_project, tmp_path / "p", steps=1, validation_prompts=[])
    run_finetune(project, monkeypatch)
    set_params(eval_every=1, checkpoint_every=1, keep_checkpoints=3)  # not in the fingerprint
    run_finetune(project, monkeypatch)
    assert resumed_from() == 1
    set_params(steps=2)  # schedule_steps null: the schedule now spans 2 steps
    capsys.readouterr()
    run_finetune(project, monkeypatch)
    assert "another params.schedule_steps: starting afresh" in capsys.readouterr().out
    assert resumed_from() == 0
    assert checkpoint_names() == ["step_0000001", "step_0000002"]


def test_keep_checkpoints_zero_trains_and_saves_without_a_checkpoint(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed recipe's setting: no checkpoint beside the saved pipeline (the UNet once)."""
    project = project_with_base(
        sd_base_project, tmp_path / "p", steps=2, checkpoint_every=1, keep_checkpoints=0,
        validation_prompts=[],
    )  # fmt: skip
    run_finetune(project, monkeypatch)
    assert (Path("models/sd") / "model_index.json").is_file()
    assert checkpoint_names() == []


def test_a_schedule_shorter_than_the_run_is_a_clear_error() -> None:
    # (old param names: the params model's, tests/test_params_model.py)
    with pytest.raises(PipelineError, match="schedule_steps"):
        TrainConfig.from_params({"steps": 3, "schedule_steps": 2})


def test_changed_base_model_does_not_resume(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-trained base (here: its VAE) must not continue the old UNet's training."""
    from diffusers import AutoencoderKL

    fixed = {"schedule_steps": 2, "validation_prompts": []}
    project = project_with_base(sd_base_project, tmp_path / "p", steps=1, **fixed)
    run_finetune(project, monkeypatch)
    vae = AutoencoderKL.from_pretrained("models/base_sd/pipeline", subfolder="vae")
    with torch.no_grad():
        next(vae.parameters()).add_(0.01)
    vae.save_pretrained("models/base_sd/pipeline/vae")
    set_params(steps=2)
    run_finetune(project, monkeypatch)
    assert resumed_from() == 0


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_v_prediction_survives_save_and_load(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A v-prediction fine-tune must be sampled as v-prediction, not as the base's epsilon."""
    project = project_with_base(
        sd_base_project,
        tmp_path / "p",
        steps=1,
        mode=mode,
        prediction_type="v_prediction",
        train_text_encoder=mode == "full",
        validation_prompts=[],
    )
    run_finetune(project, monkeypatch)
    assert load_base_sd("models/base_sd").scheduler.config.prediction_type == "epsilon"
    tuned = load_finetuned_sd("models/sd", "models/base_sd")
    assert tuned.scheduler.config.prediction_type == "v_prediction"


def test_lora_checkpoints_hold_the_adapters_only_and_resume(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lora = {
        "mode": "lora",
        "train_text_encoder": False,
        "validation_prompts": [],
        "lr": 1e-2,
        "schedule_steps": 2,
    }
    straight = project_with_base(sd_base_project, tmp_path / "straight", steps=2, **lora)
    run_finetune(straight, monkeypatch)
    resumed = project_with_base(sd_base_project, tmp_path / "resumed", steps=1, **lora)
    run_finetune(resumed, monkeypatch)
    checkpoint = CHECKPOINTS / "step_0000001"
    saved = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    unet_bytes = sum(
        f.stat().st_size for f in Path("models/base_sd/pipeline/unet").glob("*.safetensors")
    )
    assert saved < unet_bytes / 4  # adapters and optimiser state, not the frozen UNet
    assert not list(checkpoint.glob("model*.safetensors"))

    set_params(steps=2)
    run_finetune(resumed, monkeypatch)
    assert resumed_from() == 1
    a = load_file(straight / "models/sd/pytorch_lora_weights.safetensors")
    b = load_file("models/sd/pytorch_lora_weights.safetensors")
    # the adapters, their optimiser state and the batches were all restored
    assert max_abs_diff(a, b) <= 1e-6


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_bf16_mixed_precision_trains_validates_and_saves(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """What `accelerate launch --mixed_precision bf16|fp16` runs on a GPU: half-precision
    VAE (and LoRA UNet) weights, the validation images included."""
    project = project_with_base(
        sd_base_project,
        tmp_path / "p",
        steps=1,
        eval_every=1,
        mode=mode,
        train_text_encoder=mode == "full",
    )
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    run_finetune(project, monkeypatch)
    images = list(Path("dvclive/finetune_sd/plots/images/validation").glob("*.png"))
    assert len(images) == 1
    assert load_finetuned_sd("models/sd", "models/base_sd").unet is not None


@pytest.mark.parametrize("cache_latents", [False, True])
def test_half_precision_vae_on_a_bf16_cpu_trains_validates_and_saves(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_latents: bool
) -> None:
    """`vae_precision: auto` without mixed precision on a CPU with bf16 instructions: the
    frozen VAE encodes in bf16 (into the cache too) while the UNet trains in fp32; the
    validation images (fp32 latents into the bf16 VAE) come out, and the saved pipeline is
    fp32 with the base's VAE weights exactly, not their bf16 rounding."""
    from fashion.sd import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    encoded = []
    encode = FineTuner.encode
    monkeypatch.setattr(
        FineTuner, "encode", lambda self, x: encoded.append(m := encode(self, x)) or m
    )
    project = project_with_base(
        sd_base_project, tmp_path / "p", steps=2, eval_every=2, vae_precision="auto",
        cache_latents=cache_latents,
    )  # fmt: skip
    run_finetune(project, monkeypatch)
    assert encoded and all(m.dtype == torch.bfloat16 for m in encoded)
    assert len(list(Path("dvclive/finetune_sd/plots/images/validation").glob("*.png"))) == 1
    saved = load_finetuned_sd("models/sd", "models/base_sd")
    for model in (saved.vae, saved.unet, saved.text_encoder):
        assert all(p.dtype == torch.float32 for p in model.parameters())
    base_vae = load_base_sd("models/base_sd").vae.state_dict()
    assert max_abs_diff(saved.vae.state_dict(), base_vae) == 0


def test_a_fresh_machine_resumes_from_the_checkpoint_mirror(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "drive" / "finetune_sd"
    project = project_with_base(
        sd_base_project,
        tmp_path / "p",
        steps=2,
        schedule_steps=3,
        checkpoint_every=1,
        validation_prompts=[],
        checkpoint_mirror=str(mirror),
    )
    run_finetune(project, monkeypatch)
    # the latest checkpoint only, and what it was trained with
    assert sorted(p.name for p in mirror.iterdir()) == ["fingerprint.json", "step_0000002"]
    shutil.rmtree("checkpoints")  # a new machine: the local disk is gone
    set_params(steps=3)
    run_finetune(project, monkeypatch)
    assert resumed_from() == 2
    assert sorted(p.name for p in mirror.iterdir()) == ["fingerprint.json", "step_0000003"]


def test_vae_precision_is_part_of_the_fingerprint() -> None:
    """The frozen VAE's dtype changes the latents training sees: another value is another
    run, which does not resume the first one's checkpoints."""
    from types import SimpleNamespace

    def settings(**params: object) -> dict:
        tuner = SimpleNamespace(
            cfg=TrainConfig.from_params({"steps": 3, **params}),
            source="",
            world=1,
            accelerator=SimpleNamespace(mixed_precision="no"),
        )
        return FineTuner.fingerprint(tuner)["params"]

    default = settings()
    assert default["vae_precision"] == "auto"
    assert settings(vae_precision="fp32") == {**default, "vae_precision": "fp32"}
