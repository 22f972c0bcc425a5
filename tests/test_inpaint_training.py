"""finetune_inpaint: the UNet's extra inputs (mask, masked-image latents), a run that saves a
pipeline with validation redress grids (16 channels under the default redress v2: 9 and the
target map's 7), and resume; on the tiny SD of
tests/sd_testdata.py, fine-tuned first by finetune_sd and recorded by base_inpaint as the
demo does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

import base_inpaint
import finetune_inpaint
import finetune_sd
from fashion.data.subset import read_images, read_segmentation, read_table
from fashion.inpaint.models import load_finetuned_inpainting, training_start
from fashion.inpaint.training import InpaintData, InpaintFineTuner
from fashion.sd.config import TrainConfig
from sd_testdata import update_sd_stage

LIVE = Path("dvclive/finetune_inpaint")


def set_params(project: Path, **changed: object) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    update_sd_stage(params, "finetune_inpaint", changed)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """finetune_inpaint in `project`, after base_inpaint where it has not run."""
    monkeypatch.chdir(project)
    if not Path("models/base_inpaint").is_dir():
        base_inpaint.main()
    AcceleratorState._reset_state(True)
    finetune_inpaint.main()


TRAINED: dict[Path, Path] = {}


def trained_project(sd_finetuned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sd_finetuned` with base_inpaint and finetune_inpaint run (models/inpaint), once a
    session, read-only: the `inpaint_project` of this module and test_redress."""
    if sd_finetuned not in TRAINED:
        project = tmp_path_factory.mktemp("inpaint") / "trained"
        shutil.copytree(sd_finetuned, project)
        with pytest.MonkeyPatch.context() as mp:
            run(project, mp)
        TRAINED[sd_finetuned] = project
    return TRAINED[sd_finetuned]


@pytest.fixture
def inpaint_project(sd_finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fine-tuned inpainting project, base_inpaint's output included."""
    return trained_project(sd_finetuned_project, tmp_path_factory)


def test_the_unet_reads_the_mask_and_the_masked_images_latents(
    sd_finetuned_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sd_finetuned_project)
    AcceleratorState._reset_state(True)
    pipe = training_start("models/sd", None, "full")  # the fine-tuned SD, grown
    assert pipe.unet.config.in_channels == 9
    train = "data/subset/train.h5"
    images = read_images(train)
    masks = read_segmentation(train) == 3  # upper clothes
    data = InpaintData(images, read_table(train)["caption"].tolist(), masks)
    cfg = TrainConfig(resolution=32, batch_size=8, random_flip=True, cache_latents=False)
    scheduler = finetune_sd.noise_scheduler("models/base_sd/pipeline")
    tuner = InpaintFineTuner(pipe, scheduler, cfg, data, Accelerator(), random_mask_p=0.0)
    seen: list[torch.Tensor] = []
    encode = tuner.vae.encode
    monkeypatch.setattr(
        tuner.vae, "encode", lambda x, *a, **k: seen.append(x) or encode(x, *a, **k)
    )
    rows = np.arange(8)
    flip = np.array([True, False] * 4)
    extra = tuner.conditioning(rows, flip, np.random.default_rng(0))
    assert extra.shape == (8, 5, 16, 16)  # mask + 4 latent channels at 32 px / 2
    want = masks[rows].copy()
    want[flip] = want[flip][:, :, ::-1]  # flipped with its image
    small = torch.nn.functional.interpolate(
        torch.from_numpy(want[:, None]).float(), size=(16, 16), mode="nearest"
    )
    torch.testing.assert_close(extra[:, :1], small)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(want[:, None]).float(), size=(32, 32), mode="nearest"
    )
    pixels = seen[-1]
    assert (pixels[big.expand_as(pixels) > 0.5] == 0).all()  # masked pixels blanked
    assert (pixels[big.expand_as(pixels) < 0.5] != 0).float().mean() > 0.9

    # cached garment-masked latents: the same draw as encoding in the step
    cfg = TrainConfig(resolution=32, batch_size=8, random_flip=True, cache_latents=True)
    cached = InpaintFineTuner(pipe, scheduler, cfg, data, Accelerator(), random_mask_p=0.0)
    torch.manual_seed(3)
    a = tuner.conditioning(rows, flip, np.random.default_rng(0))
    torch.manual_seed(3)
    b = cached.conditioning(rows, flip, np.random.default_rng(0))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # and with random masks on some images: those are encoded in the step, flipped alike
    for model in (tuner, cached):
        model.random_mask_p = 0.5
    torch.manual_seed(4)
    a = tuner.conditioning(rows, flip, np.random.default_rng(1))
    torch.manual_seed(4)
    b = cached.conditioning(rows, flip, np.random.default_rng(1))
    drawn = np.random.default_rng(1).random(8) < 0.5
    assert 0 < drawn.sum() < 8  # a mix of cached and encoded images
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_finetune_saves_a_map_conditioned_pipeline_with_validation_grids(
    inpaint_project: Path,
) -> None:
    source = json.loads((inpaint_project / "models/inpaint/source.json").read_text())
    assert source == {"pretrained": "models/base_inpaint/pipeline", "revision": None}
    pipe = load_finetuned_inpainting(inpaint_project / "models/inpaint")
    assert pipe.unet.config.in_channels == 9 + 7  # redress v2: and the map's classes
    saved = load_file(inpaint_project / "models/inpaint/unet/diffusion_pytorch_model.safetensors")
    t2i = load_file(inpaint_project / "models/sd/unet/diffusion_pytorch_model.safetensors")
    assert saved["conv_in.weight"].shape[1] == 16
    assert saved["conv_in.weight"][:, 4:9].abs().max() > 0  # the new channels learned
    assert saved["conv_in.weight"][:, 9:].abs().max() > 0  # the map's too
    assert not torch.equal(saved["conv_in.weight"][:, :4], t2i["conv_in.weight"])
    live = inpaint_project / LIVE
    losses = pd.read_csv(live / "plots/metrics/train/loss.tsv", sep="\t")
    assert losses.step.tolist() == [1, 2, 3, 4] and np.isfinite(losses.loss).all()
    grids = sorted((live / "plots/images/validation").glob("*.png"))
    assert [g.name for g in grids] == ["step-000002.png", "step-000004.png"]
    from PIL import Image

    # 2 columns of target map (v2) above input above output
    assert Image.open(grids[-1]).size == (2 * 128, 3 * 128)


def test_more_steps_resume_and_match_a_fresh_run(
    sd_finetuned_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """4 steps of an 8-step schedule, then 8: resumes from step 4 and ends on the weights of
    one uninterrupted 8-step run (the masks' random draws included)."""
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    for project in (resumed, fresh):
        shutil.copytree(sd_finetuned_project, project)
    set_params(resumed, steps=4, schedule_steps=8)
    run(resumed, monkeypatch)
    set_params(resumed, steps=8)
    capsys.readouterr()
    run(resumed, monkeypatch)
    assert "resumed from the step 4 checkpoint" in capsys.readouterr().out
    set_params(fresh, steps=8, schedule_steps=8)
    run(fresh, monkeypatch)
    unet = "models/inpaint/unet/diffusion_pytorch_model.safetensors"
    a, b = load_file(resumed / unet), load_file(fresh / unet)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_bf16_mixed_precision_trains_validates_and_saves(
    sd_finetuned_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `accelerate launch --mixed_precision bf16` runs on a GPU: a bf16 VAE and text
    encoder, the masked-image latents and the validation redress grid included."""
    project = tmp_path / "p"
    shutil.copytree(sd_finetuned_project, project)
    set_params(project, steps=1, eval_every=1)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    run(project, monkeypatch)
    assert len(list((LIVE / "plots/images/validation").glob("*.png"))) == 1
    pipe = load_finetuned_inpainting("models/inpaint")
    assert pipe.unet.config.in_channels == 9 + 7  # redress v2: and the map's classes
