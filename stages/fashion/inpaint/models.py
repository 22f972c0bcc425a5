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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from fashion.core.params import PARAMS_FILE
from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.inpaint.unet import LATENT_CHANNELS, inpainting_unet
from fashion.sd.models import LORA_WEIGHTS, fuse_lora, load_sd

FINETUNED_SD = "finetuned_sd"


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
    pretrained: str | Path, revision: str | None, mode: str
) -> StableDiffusionInpaintPipeline:
    """What the fine-tune trains: the base, a text-to-image UNet grown to read 9 channels."""
    pipe = load_inpainting(pretrained, revision)
    if pipe.unet.config.in_channels == LATENT_CHANNELS:
        if mode != "full":
            raise PipelineError(
                f"{PARAMS_FILE}: finetune_inpaint.mode {mode!r}: the base {pretrained} has a "
                "text-to-image UNet, grown to new input channels that only mode: full trains"
            )
        pipe.unet = inpainting_unet(pipe.unet)
    return pipe


def load_finetuned_inpainting(
    inpaint_dir: str | Path, **kwargs: Any
) -> StableDiffusionInpaintPipeline:
    """The fine-tuned inpainting pipeline: a full saved pipeline, or LoRA weights fused onto
    the base recorded in `inpaint_dir/source.json`."""
    inpaint_dir = Path(inpaint_dir)
    if (inpaint_dir / "model_index.json").is_file():
        return load_inpainting(inpaint_dir, **kwargs)
    if (inpaint_dir / LORA_WEIGHTS).is_file():
        return fuse_lora(load_inpainting(*read_source(inpaint_dir), **kwargs), inpaint_dir)
    raise PipelineError(
        f"{inpaint_dir}: neither a saved pipeline nor {LORA_WEIGHTS} (run finetune_inpaint)"
    )
