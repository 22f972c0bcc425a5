"""The inpainting UNet, grown from a text-to-image one the way Stable Diffusion's inpainting
model was initialised: five extra input channels, zero-initialised, every other weight kept.

`StableDiffusionInpaintPipeline` feeds the UNet `cat([latents, mask, masked_image_latents])`
along the channels: 4 noisy latents, 1 mask (downsampled to the latents), 4 latents of the
image with the masked region blanked. With zero weights on the last five, the new UNet starts
as exactly the text-to-image model and learns to use the mask and the kept pixels.

Redress v2 grows it once more, as MGD (Multimodal Garment Designer) adds its pose and sketch
channels: one channel per segmentation class, the target map at latent size
(`fashion.shape.maps.latent_maps`), zero-initialised, so the grown model starts as the
9-channel one. The pipeline only knows 4 or 9 channels: `MapConditionedUNet` hands it the
9-channel face and appends the maps inside.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
from diffusers.configuration_utils import FrozenDict
from torch import nn

from fashion.sd.conv_in import grown_unet

LATENT_CHANNELS = 4
INPAINT_CHANNELS = 2 * LATENT_CHANNELS + 1  # latents, mask, masked-image latents


def inpainting_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A 9-channel copy of the 4-channel `unet` (config `in_channels=9`), the original untouched.

    The copy keeps the original's dtype, device and which weights train; the new input
    channels of `conv_in` are zero, so its output equals the original's whatever they hold.
    """
    if unet.config.in_channels != LATENT_CHANNELS:
        raise ValueError(
            f"inpainting_unet wants a text-to-image UNet ({LATENT_CHANNELS} input channels), "
            f"got in_channels={unet.config.in_channels}"
        )
    return grown_unet(unet, INPAINT_CHANNELS)


def map_channels(unet: UNet2DConditionModel) -> int:
    """How many map channels an inpainting `unet` reads beyond the pipeline's 9 (0: v1)."""
    return max(int(unet.config.in_channels) - INPAINT_CHANNELS, 0)


class MapConditionedUNet(nn.Module):
    """A UNet with map channels as `StableDiffusionInpaintPipeline` sees a 9-channel one.

    Set `maps` (B, K, h, w) before each pipeline call: every UNet call appends them to its
    9-channel input, repeated over the batch's copies (classifier-free guidance runs the
    unconditional and the conditional halves as one batch: both see the map; the guidance
    is over the text). Attributes the pipeline reads (`config`, `dtype`, `device`) are the
    UNet's, with `config.in_channels` 9.
    """

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        if not map_channels(unet):
            raise ValueError(f"MapConditionedUNet wants more than {INPAINT_CHANNELS} channels")
        self.unet = unet
        self.maps: torch.Tensor | None = None
        self.config = FrozenDict({**unet.config, "in_channels": INPAINT_CHANNELS})

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def forward(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.maps is None:
            raise RuntimeError("MapConditionedUNet: set .maps before sampling")
        maps = self.maps.to(sample.device, sample.dtype)
        if len(sample) % len(maps):
            raise ValueError(f"a batch of {len(sample)} latents for {len(maps)} maps")
        maps = maps.repeat(len(sample) // len(maps), 1, 1, 1)
        return self.unet(torch.cat([sample, maps], dim=1), *args, **kwargs)


def with_map_channels(pipe: StableDiffusionInpaintPipeline) -> StableDiffusionInpaintPipeline:
    """`pipe` itself for a 9-channel UNet; for one with map channels, a pipeline on the same
    components whose UNet is a `MapConditionedUNet` (set its `maps` before each call)."""
    if not map_channels(pipe.unet):
        return pipe
    components = {**pipe.components, "unet": MapConditionedUNet(pipe.unet)}
    return StableDiffusionInpaintPipeline(**components, requires_safety_checker=False)
