"""Redress on the benchmark's pairs: which pairs are run, the sentence-guided inpainting of
each source's garment region, and the figure of the results.

`redress.version` v1 redraws the source's garment mask from the sentence alone. v2 first
draws the target's segmentation map (the shape stage, `fashion.shape`) from the source's
coarse body map and the sentence, then redraws the union of the source's and the target
map's garment regions (less the source's hair and face), the fine-tuned UNet reading the
map through its extra channels (`fashion.inpaint.unet.MapConditionedUNet`). The zero-shot
base has no map channels: in v2 it gets the same mask, without the map.

The evaluated split (`split.evaluate`: the test split with the benchmark's pairs, or the
validation split with seeded pairs, for choosing defaults) is cut in two halves by a seeded
shuffle. Realism compares the redressed
images whose source lies in one half with the real images of the other, so no redressed
image is compared with its own source; the pairs themselves are drawn from the whole split
(`redress.n_images`, or all 8,979 test pairs on the real benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import StableDiffusionInpaintPipeline
from PIL import Image
from tqdm import tqdm

from fashion.core.params import PARAMS_FILE, capped_size
from fashion.core.stage import PipelineError
from fashion.data.subset import sample_rows
from fashion.inpaint.masks import class_ids, composite, garment_mask, redress_masks
from fashion.inpaint.unet import MapConditionedUNet
from fashion.sd.sampling import FinishedBatches
from fashion.shape.maps import latent_maps, redress_mask_v2
from fashion.shape.model import ShapeNet, predict_target_maps

VERSIONS = ("v1", "v2")


def redress_version(params: dict) -> str:
    """`redress.version`, checked."""
    version = params.get("version", "v1")
    if version not in VERSIONS:
        raise PipelineError(
            f"{PARAMS_FILE}: redress.version must be one of {list(VERSIONS)}, got {version!r}"
        )
    return version


@dataclass
class RedressInputs:
    masks: np.ndarray  # bool (N, H, W): the region redrawn
    maps: np.ndarray | None  # uint8 (N, H, W): the target maps the shape model drew (v2)


def redress_inputs(
    segmentation: np.ndarray,
    sentences: list[str],
    params: dict,
    shape_model: ShapeNet | None = None,
) -> RedressInputs:
    """The masks (and in v2 the target maps) of redressing sources with these segmentations
    to `sentences`, by the `redress` params."""
    masks = redress_masks(segmentation, params)
    if redress_version(params) == "v1":
        return RedressInputs(masks, None)
    if shape_model is None:
        raise ValueError("redress v2 needs the shape model")
    maps = predict_target_maps(shape_model, segmentation, sentences)
    target = garment_mask(maps, class_ids(params["mask_classes"]), int(params["mask_dilation"]))
    return RedressInputs(redress_mask_v2(masks, segmentation, target), maps)


@dataclass
class RedressSample:
    source: np.ndarray  # test subset rows of the redressed images
    target: np.ndarray  # rows whose sentences they are redressed to, pair by pair
    realism: np.ndarray  # bool: the source lies in the half whose redressed images realism scores
    reference: np.ndarray  # the other half of the test split: the realism reference


def sample_pairs(
    source: np.ndarray, target: np.ndarray, split_rows: np.ndarray, n_pairs: int | str, seed: int
) -> RedressSample:
    """`n_pairs` (or all) of the pairs (`source`, `target` rows), a fixed-seed sample kept in
    pair order, and the halves of the split's rows (`split_rows`) that realism compares."""
    if not len(source):
        raise PipelineError(f"{PARAMS_FILE}: redress: no pair has both images in the split")
    holder = f"the evaluated split holds {len(source)} pairs"
    n_pairs = capped_size(n_pairs, len(source), "redress.n_images", holder)
    chosen = sample_rows(len(source), n_pairs, seed, "redress.n_images")
    order = np.random.default_rng([seed, 0]).permutation(np.asarray(split_rows))
    half = (len(order) + 1) // 2
    return RedressSample(
        source[chosen],
        target[chosen],
        np.isin(source[chosen], order[:half]),
        np.sort(order[half:]),
    )


def pipeline_inputs(images: np.ndarray, masks: np.ndarray) -> dict[str, list[Image.Image]]:
    """`StableDiffusionInpaintPipeline`'s `image` and `mask_image` (white: redraw) of uint8
    images and bool masks."""
    return {
        "image": [Image.fromarray(i) for i in images],
        "mask_image": [Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
    }


def paste_back(sources: np.ndarray, drawn: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The pipeline's float images in [0, 1] (`output_type="np"`, at its resolution) resized
    to the uint8 sources' size and composited onto them: outside the masks, the sources."""
    side = sources.shape[1]
    resized = [
        np.asarray(Image.fromarray(to_uint8(d)).resize((side, side), Image.BICUBIC)) for d in drawn
    ]
    return composite(sources, np.stack(resized), masks)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] as uint8, rounded as diffusers' PIL output is."""
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@torch.no_grad()
def redrawn(
    pipe: StableDiffusionInpaintPipeline,
    images: np.ndarray,
    masks: np.ndarray,
    prompts: list[str],
    seeds: list[int],
    params: dict,
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """One batch: uint8 `images` redrawn inside `masks` to `prompts` at `resolution` (a
    map-conditioned UNet reading `maps`), each with its own seed's noise, resized back and
    composited onto the images."""
    size = int(params["resolution"])
    if isinstance(pipe.unet, MapConditionedUNet):
        pipe.unet.maps = latent_maps(maps, size // pipe.vae_scale_factor)
    drawn = pipe(
        prompt=prompts,
        **pipeline_inputs(images, masks),
        height=size,
        width=size,
        num_inference_steps=int(params["denoising_steps"]),
        guidance_scale=float(params["guidance_scale"]),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    return paste_back(images, drawn, masks)


def redress_images(
    pipe: StableDiffusionInpaintPipeline,
    images: np.ndarray,
    masks: np.ndarray,
    prompts: list[str],
    seeds: list[int],
    params: dict,
    finished: FinishedBatches,
    model: str,
    maps: np.ndarray | None = None,
) -> None:
    """Sample this process's share of the batches of `model` no earlier run finished
    (`finished.todo`) into `finished`: uint8 images, each source redrawn inside its mask to
    its prompt at `resolution`, resized back to the source's size, and composited onto the
    source (every pixel outside the mask is the source's). Each image's noise comes from its
    own seed. `maps`: the target maps a map-conditioned UNet (`MapConditionedUNet`) reads."""
    batch = int(params["batch_size"])
    if isinstance(pipe.unet, MapConditionedUNet) and maps is None:
        raise ValueError(f"the {model} UNet reads target maps: give them")
    for start in tqdm(finished.todo(model, len(images), batch), desc="redress", mininterval=5):
        part = slice(start, start + batch)

        def sample(part: slice = part) -> np.ndarray:
            shown = None if maps is None else maps[part]
            return redrawn(
                pipe, images[part], masks[part], prompts[part], seeds[part], params, shown
            )

        finished.batch(model, start, sample)
