"""The Generate tab: a sentence (typed, or written from four attributes in the benchmark's
phrasing) gives N images from the base and from the fine-tuned SD, with the same seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from fashion.app.outputs import AppError, Outputs, as_app_errors, checked_text, device
from fashion.data.attributes import ATTRIBUTES, LABEL_MAPS
from fashion.data.captions import compose_caption
from fashion.inpaint.redress import to_uint8
from fashion.sd.models import load_base_sd, load_finetuned_sd
from fashion.sd.precision import compute_dtype
from fashion.sd.sampling import check_scheduler, ready_to_sample

MODELS = ("base", "finetuned")
MAX_IMAGES = 16  # a page's worth; the form offers 1 to this many


def choices() -> dict[str, list[str]]:
    """The names the attribute pickers offer, in the benchmark's code order."""
    return {attribute: list(LABEL_MAPS[attribute].values()) for attribute in ATTRIBUTES}


def sentence(gender: str, color: str, sleeve: str, category: str) -> str:
    """The benchmark's sentence for four attribute names, e.g. "the lady is wearing a red
    long-sleeved dress."."""
    codes = []
    for attribute, name in zip(ATTRIBUTES, (gender, color, sleeve, category), strict=True):
        by_name = {n: code for code, n in LABEL_MAPS[attribute].items()}
        if name not in by_name:
            raise AppError(f"pick a {attribute}: {name!r} is not one of the benchmark's")
        codes.append(by_name[name])
    return compose_caption(*codes)


@dataclass
class Settings:
    """The form's sampling settings; params.yaml's `generate` section gives the defaults."""

    n_images: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str = ""

    @classmethod
    def defaults(cls, outputs: Outputs, n_images: int = 4) -> Settings:
        p = outputs.section("generate")
        return cls(
            n_images,
            int(p["denoising_steps"]),
            float(p["guidance_scale"]),
            int(p["seed"]),
            str(p["negative_prompt"] or ""),
        )


def pipelines(outputs: Outputs) -> dict[str, StableDiffusionPipeline]:
    """The base and the fine-tuned SD, in generate's precision and scheduler, loaded once."""
    p = outputs.section("generate")

    def load(model: str) -> StableDiffusionPipeline:
        dtype = compute_dtype(p["precision"], device(), "generate.precision")
        base = outputs.path("base_sd")
        pipe = (
            load_base_sd(base, torch_dtype=dtype)
            if model == "base"
            else load_finetuned_sd(outputs.path("sd"), base, torch_dtype=dtype)
        )
        scheduler = check_scheduler(p["scheduler"], "generate.scheduler")
        return ready_to_sample(pipe, scheduler).to(device())

    return {model: outputs.load(f"sd/{model}", lambda m=model: load(m)) for model in MODELS}


def generate(outputs: Outputs, prompt: str | None, settings: Settings) -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) images of `prompt` from each model; image i of both has the noise
    of seed `settings.seed + i`."""
    if not 1 <= settings.n_images <= MAX_IMAGES:
        raise AppError(f"ask for 1 to {MAX_IMAGES} images, not {settings.n_images}")
    if settings.steps < 1:
        raise AppError(f"denoising steps must be at least 1, not {settings.steps}")
    pipes = pipelines(outputs)
    empty = "type a prompt (or pick the attributes and write the sentence)"
    text = checked_text(prompt, pipes["finetuned"].tokenizer, empty)
    size = int(outputs.section("generate")["resolution"])
    seeds = [settings.seed + i for i in range(settings.n_images)]
    out: dict[str, np.ndarray] = {}
    with as_app_errors(), torch.no_grad():
        for model, pipe in pipes.items():
            out[model] = pipe(
                [text] * len(seeds),
                negative_prompt=[settings.negative_prompt] * len(seeds)
                if settings.negative_prompt
                else None,
                height=size,
                width=size,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                generator=[torch.Generator().manual_seed(s) for s in seeds],
                output_type="np",
            ).images
    return {model: to_uint8(images) for model, images in out.items()}
