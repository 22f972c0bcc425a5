"""The inpainting models: the base a fine-tune starts from, and the pipelines redress runs.

`finetune_inpaint.base`:
- `finetuned_sd` (the demo): the fine-tuned text-to-image SD of `finetune_sd`. Its UNet,
  grown to 9 channels (`fashion.inpaint.unet`), is what the fine-tune starts from; as it is,
  it is the zero-shot baseline: `StableDiffusionInpaintPipeline` runs a 4-channel UNet by
  blending the known latents back at every step.
- a hub id or folder of an SD inpainting pipeline (9-channel UNet, e.g.
  `stable-diffusion-v1-5/stable-diffusion-inpainting`), pinned to a commit like the other
  base models: fine-tuned as it is, and zero-shot as the baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.inpaint.unet import inpainting_unet
from fashion.sd.models import LORA_WEIGHTS, fuse_lora, load_finetuned_sd, load_sd

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


def base_pipeline(
    base: str, revision: str | None, sd_dir: Path, base_sd_dir: Path, **kwargs: Any
) -> StableDiffusionInpaintPipeline:
    """The zero-shot baseline of `base` (see the module docstring)."""
    if base == FINETUNED_SD:
        return as_inpainting(load_finetuned_sd(sd_dir, base_sd_dir, **kwargs))
    return load_inpainting(base, revision, **kwargs)


def training_start(
    base: str, revision: str | None, sd_dir: Path, base_sd_dir: Path
) -> StableDiffusionPipeline:
    """What the fine-tune trains: a pipeline whose UNet reads 9 channels."""
    if base == FINETUNED_SD:
        pipe = load_finetuned_sd(sd_dir, base_sd_dir)
        pipe.unet = inpainting_unet(pipe.unet)
        return pipe
    return load_inpainting(base, revision)


def load_finetuned_inpainting(
    inpaint_dir: str | Path, sd_dir: Path, base_sd_dir: Path, **kwargs: Any
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
