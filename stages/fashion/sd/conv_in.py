"""Widening a UNet's input: a copy whose `conv_in` reads more channels, the new ones zero.

How Stable Diffusion's inpainting model was initialised from the text-to-image one (5 extra
channels, `fashion.inpaint.unet`), and how MGD adds condition channels: with zero weights
on the new channels the widened UNet computes exactly what the original does.
"""

from __future__ import annotations

import copy

import torch
from diffusers import UNet2DConditionModel
from torch import nn


def grown_unet(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """A copy of `unet` reading `in_channels` inputs (at least its own), the new ones zero.

    `unet` itself is untouched; the copy keeps its dtype, device and which weights train.
    """
    have = unet.config.in_channels
    if in_channels < have:
        raise ValueError(f"grown_unet: {in_channels} input channels, fewer than the {have} it has")
    grown = copy.deepcopy(unet)
    grown.conv_in = _grown_conv(unet.conv_in, in_channels)
    grown.register_to_config(in_channels=in_channels)
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
