"""The real profile end to end, offline, under bf16 mixed precision: stand-in model folders
where the hub ids would be.

The tiny base models and demo benchmark of the session's pipeline run play the real
CLIP, Stable Diffusion and benchmark; sizes are overridden to fit them, everything
else (LoRA fine-tuning, gradient checkpointing, hub-id loading path) is the profile's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_project_copy, run

# What a CPU and a 320-image benchmark need on top of the real profile.
FIT_TO_TEST = [
    # bf16 on the CPU: the half-precision paths (VAE, LoRA UNet, validation images) that
    # fp16 takes on a GPU, which fp32 would not exercise
    "accelerate.launch=accelerate launch --num_processes 1 --num_machines 1"
    " --mixed_precision bf16 --dynamo_backend no",
    "generate.precision=bf16",
    "finetune_clip.steps=4",
    "finetune_clip.batch_size=16",
    "split.validation_images=16",
    "finetune_clip.eval_every=2",
    "finetune_clip.checkpoint_every=2",
    "finetune_clip.num_workers=0",
    "eval_clip.n_images=all",
    "sd_training.resolution=64",
    "sd_training.validation_denoising_steps=2",
    "finetune_sd.steps=4",
    "finetune_sd.batch_size=4",
    "finetune_sd.grad_accum=1",
    "finetune_sd.checkpoint_every=2",
    "finetune_sd.eval_every=2",
    "generate.resolution=64",
    "generate.denoising_steps=2",
    "generate.prompts.colors=[red, blue]",
    "generate.prompts.sleeves=[long-sleeved]",
    "generate.prompts.categories=[tee]",
    "reference.n_images=8",
    "evaluate.skip_inception=true",
    "reshape.steps=4",
    "reshape.checkpoint_every=2",
    "reshape.eval_every=2",
    "finetune_inpaint.steps=4",
    "finetune_inpaint.batch_size=4",
    "finetune_inpaint.grad_accum=1",
    "finetune_inpaint.checkpoint_every=2",
    "finetune_inpaint.eval_every=2",
    "redress.resolution=64",
    "redress.denoising_steps=2",
    "redress.n_images=8",
    "redress.precision=bf16",
]


def inpainting_stand_in(pipeline_dir: Path, dest: Path) -> None:
    """The tiny SD grown to an inpainting pipeline (9-channel UNet), where the real profile
    names SD v1.5's inpainting model."""
    from fashion.inpaint.models import as_inpainting
    from fashion.inpaint.unet import inpainting_unet
    from fashion.sd.models import load_sd

    pipe = load_sd(pipeline_dir)
    pipe.unet = inpainting_unet(pipe.unet)
    as_inpainting(pipe).save_pretrained(dest)


@pytest.mark.slow
def test_real_profile_runs_offline_with_stand_in_models(pipeline: Path, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    shutil.copytree(pipeline / "models" / "base_clip", hub / "clip-vit-base-patch32")
    shutil.copytree(pipeline / "models" / "base_sd" / "pipeline", hub / "stable-diffusion-v1-5")
    inpainting_stand_in(hub / "stable-diffusion-v1-5", hub / "stable-diffusion-inpainting")
    benchmark = tmp_path / "Fashion Synthesis Benchmark"
    shutil.copytree(pipeline / "data" / "demo_benchmark", benchmark)
    password = yaml.safe_load((pipeline / "params.yaml").read_text())["demo"]["password"]

    project = make_project_copy(tmp_path / "project")
    run(
        [
            "python",
            "scripts/use_profile.py",
            "profiles/real.yaml",
            f"benchmark.root={benchmark}",
            f"base_clip.pretrained={hub / 'clip-vit-base-patch32'}",
            f"base_sd.pretrained={hub / 'stable-diffusion-v1-5'}",
            f"base_inpaint.pretrained={hub / 'stable-diffusion-inpainting'}",
            *FIT_TO_TEST,
        ],
        project,
    )
    diff = run(["dvc", "params", "diff", "--json"], project).stdout
    assert "openai" not in diff and "finetune_sd.mode" in diff

    run(["dvc", "repro"], project, env={"FASHION_ZIP_PASSWORD": password}, timeout=1200)

    assert (project / "models" / "sd" / "pytorch_lora_weights.safetensors").is_file()
    assert (project / "models" / "inpaint" / "pytorch_lora_weights.safetensors").is_file()
    redress = json.loads((project / "metrics" / "redress.json").read_text())
    assert redress["finetuned"]["max_abs_diff_outside_mask"] == 0
    clip = json.loads((project / "metrics" / "clip.json").read_text())
    assert clip["n"] > 0 and set(clip) >= {"base", "finetuned"}
    generation = json.loads((project / "metrics" / "generation.json").read_text())
    matched = generation["matched"]
    assert matched["n"] == 8  # reference.n_images: one image per sampled test image
    assert matched["finetuned"]["inception_score"] is None  # skipped, never made up
    assert "pixel" not in matched["finetuned"]["attr_acc"]  # the real profile's judges: CLIPs
    assert set(matched["finetuned"]["attr_acc"]) == {"finetuned_clip", "base_clip"}
