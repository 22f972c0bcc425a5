"""The inpainting UNet, grown from a text-to-image one the way Stable Diffusion's inpainting
model was initialised: five extra input channels, zero-initialised, every other weight kept.

`StableDiffusionInpaintPipeline` feeds the UNet `cat([latents, mask, masked_image_latents])`
along the channels: 4 noisy latents, 1 mask (downsampled to the latents), 4 latents of the
image with the masked region blanked. With zero weights on the last five, the new UNet starts
as exactly the text-to-image model and learns to use the mask and the kept pixels.
"""

from __future__ import annotations

import copy

import torch
from diffusers import UNet2DConditionModel
from torch import nn

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
    grown = copy.deepcopy(unet)
    grown.conv_in = _grown_conv(unet.conv_in, INPAINT_CHANNELS)
    grown.register_to_config(in_channels=INPAINT_CHANNELS)
    return grown


def _grown_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """`conv` with `in_channels` inputs: its weights on the first ones, zeros on the rest."""
    out = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        out.weight.zero_()
        out.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    out.requires_grad_(conv.weight.requires_grad)
    return out
