"""The inpainting models: the base a fine-tune starts from, and the pipelines redress runs.

The `base_inpaint` stage records the base in `models/base_inpaint/source.json`
(`base_inpaint.pretrained`, docs/redress.md):
- `finetuned_sd` (the demo): `finetune_sd`'s text-to-image model, saved there as an
  inpainting pipeline with its 4-channel UNet. As it is, it is the zero-shot baseline:
  `StableDiffusionInpaintPipeline` runs a 4-channel UNet by blending the known latents back
  at every step. The fine-tune starts from it with the UNet grown to 9 channels
  (`fashion.inpaint.unet`).
- a hub id or folder of an SD inpainting pipeline (9-channel UNet, e.g.
  `stable-diffusion-v1-5/stable-diffusion-inpainting`), pinned to a commit like the other
  base models: fine-tuned as it is, and zero-shot as the baseline.

A fine-tune that conditions on more inputs (condition maps) widens the UNet further,
new channels zero (`grown_unet`). LoRA on attention alone cannot train them: mode
lora_conv_in also trains `conv_in` and saves it beside the adapters
(`fashion.sd.models.CONV_IN_WEIGHTS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from fashion.core.params import PARAMS_FILE
from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.inpaint.unet import INPAINT_CHANNELS, LATENT_CHANNELS, grown_unet, inpainting_unet
from fashion.sd.models import LORA_WEIGHTS, fuse_lora, load_sd

FINETUNED_SD = "finetuned_sd"
# The fine-tuning modes that train a widened UNet's new input channels.
GROWING_MODES = ("full", "lora_conv_in")


def as_inpainting(pipe: StableDiffusionPipeline) -> StableDiffusionInpaintPipeline:
    """The inpainting pipeline on `pipe`'s components (no safety checker)."""
    components = {**pipe.components, "safety_checker": None, "feature_extractor": None}
    return StableDiffusionInpaintPipeline(**components, requires_safety_checker=False)


def load_inpainting(
    pretrained: str | Path, revision: str | None = None, **kwargs: Any
) -> StableDiffusionInpaintPipeline:
    """An SD inpainting pipeline from a hub id or folder, without the safety checker."""
    return load_sd(pretrained, revision, StableDiffusionInpaintPipeline, **kwargs)


def base_pipeline(base_dir: str | Path, **kwargs: Any) -> StableDiffusionInpaintPipeline:
    """The zero-shot baseline: the base the base_inpaint stage recorded in `base_dir`."""
    return load_inpainting(*read_source(base_dir), **kwargs)


def training_start(
    pretrained: str | Path, revision: str | None, mode: str, in_channels: int = INPAINT_CHANNELS
) -> StableDiffusionInpaintPipeline:
    """What the fine-tune trains: the base, its UNet grown to read `in_channels` (a
    text-to-image UNet to the 9 of inpainting first; the new channels zero)."""
    pipe = load_inpainting(pretrained, revision)
    have = int(pipe.unet.config.in_channels)
    if have >= in_channels:
        return pipe
    if mode not in GROWING_MODES:
        raise PipelineError(
            f"{PARAMS_FILE}: finetune_inpaint.mode {mode!r}: the base {pretrained} has a "
            f"{have}-channel UNet, grown to {in_channels} input channels that LoRA alone never "
            "trains: only mode: full trains them, or lora_conv_in (LoRA and conv_in)"
        )
    unet = inpainting_unet(pipe.unet) if have == LATENT_CHANNELS else pipe.unet
    pipe.unet = grown_unet(unet, in_channels) if in_channels > unet.config.in_channels else unet
    return pipe


def load_finetuned_inpainting(
    inpaint_dir: str | Path, **kwargs: Any
) -> StableDiffusionInpaintPipeline:
    """The fine-tuned inpainting pipeline: a full saved pipeline, or LoRA weights fused onto
    the base recorded in `inpaint_dir/source.json`; with lora_conv_in's conv_in weights
    there, the base's UNet is first widened to their input channels and they are loaded
    (`fuse_lora`)."""
    inpaint_dir = Path(inpaint_dir)
    if (inpaint_dir / "model_index.json").is_file():
        return load_inpainting(inpaint_dir, **kwargs)
    if (inpaint_dir / LORA_WEIGHTS).is_file():
        return fuse_lora(load_inpainting(*read_source(inpaint_dir), **kwargs), inpaint_dir)
    raise PipelineError(
        f"{inpaint_dir}: neither a saved pipeline nor {LORA_WEIGHTS} (run finetune_inpaint)"
    )
