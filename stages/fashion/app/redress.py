"""The Redress tab: a test image (by its index) and a target sentence give the region
redrawn (the mask), in redress v2 the target map the shape model draws, and the base's and
the fine-tuned model's results, one row per seed, as the `redress` stage makes them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from diffusers import StableDiffusionInpaintPipeline

from fashion.app.outputs import AppError, Outputs, as_app_errors, checked_text, device
from fashion.app.search import TestSet
from fashion.data.pairs import redress_rows
from fashion.data.subset import read_segmentation
from fashion.inpaint.models import base_pipeline, load_finetuned_inpainting
from fashion.inpaint.redress import redrawn, redress_inputs, redress_version
from fashion.inpaint.unet import with_map_channels
from fashion.sd.precision import compute_dtype
from fashion.sd.sampling import check_scheduler, ready_to_sample
from fashion.shape.maps import colored_maps
from fashion.shape.model import ShapeNet, load_shape_model

MODELS = ("base", "finetuned")
MAX_ROWS = 8


@dataclass
class Redressed:
    sentence: str
    source: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # uint8 (H, W): 255 where redrawn
    target_map: np.ndarray | None  # uint8 (H, W, 3) in the map colours (v2)
    rows: dict[str, np.ndarray]  # model -> uint8 (rows, H, W, 3), row i with seed + i


def checked_index(tests: TestSet, index: int | float | None) -> int:
    n = len(tests)
    if index is None or int(index) != index or not 0 <= index < n:
        raise AppError(f"pick a test image from 0 to {n - 1}: the test split holds {n}")
    return int(index)


def official_sentence(outputs: Outputs, tests: TestSet, index: int) -> str:
    """The sentence of the official pair whose source is test image `index`, or "" when
    no pair starts there."""
    pairs = outputs.load("pairs", lambda: dict(zip(*redress_rows(tests.path), strict=True)))
    target = pairs.get(index)
    return "" if target is None else tests.captions[int(target)]


def pipelines(outputs: Outputs) -> dict[str, StableDiffusionInpaintPipeline]:
    p = outputs.section("redress")

    def load(model: str) -> StableDiffusionInpaintPipeline:
        dtype = compute_dtype(p["precision"], device(), "redress.precision")
        pipe = (
            base_pipeline(outputs.path("base_inpaint"), torch_dtype=dtype)
            if model == "base"
            else with_map_channels(
                load_finetuned_inpainting(outputs.path("inpaint"), torch_dtype=dtype)
            )
        )
        scheduler = check_scheduler(p["scheduler"], "redress.scheduler")
        return ready_to_sample(pipe, scheduler).to(device())

    return {model: outputs.load(f"inpaint/{model}", lambda m=model: load(m)) for model in MODELS}


def shape_model(outputs: Outputs) -> ShapeNet | None:
    if redress_version(outputs.section("redress")) == "v1":
        return None
    return outputs.load("shape", lambda: load_shape_model(outputs.path("shape"), device()))


def redress(
    outputs: Outputs, tests: TestSet, index: int | float | None, target: str | None, rows: int = 4
) -> Redressed:
    """Test image `index` redrawn to `target` (the official pair's sentence when empty) by
    both models, `rows` seeds from `redress.seed`; outside the mask every pixel is the input's."""
    index = checked_index(tests, index)
    if not 1 <= rows <= MAX_ROWS:
        raise AppError(f"ask for 1 to {MAX_ROWS} rows, not {rows}")
    pipes = pipelines(outputs)
    text = checked_text(
        (target or "").strip() or official_sentence(outputs, tests, index),
        pipes["finetuned"].tokenizer,
        f"type a target sentence: no official pair starts at test image {index}",
    )
    p = outputs.section("redress")
    source = tests.images[index]
    with as_app_errors():
        inputs = redress_inputs(
            read_segmentation(tests.path, np.array([index])), [text], p, shape_model(outputs)
        )
        images = np.repeat(source[None], rows, axis=0)
        masks = np.repeat(inputs.masks, rows, axis=0)
        maps = None if inputs.maps is None else np.repeat(inputs.maps, rows, axis=0)
        seeds = [int(p["seed"]) + i for i in range(rows)]
        drawn = {
            model: redrawn(
                pipe, images, masks, [text] * rows, seeds, p, maps if model == "finetuned" else None
            )
            for model, pipe in pipes.items()
        }
    target_map = None if inputs.maps is None else colored_maps(inputs.maps)[0]
    return Redressed(text, source, inputs.masks[0].astype(np.uint8) * 255, target_map, drawn)
