"""The published Stable Diffusion v1.5 UNet architecture, for models built without a download.

Used by the stand-in models (`scripts/standin_models.py`, random weights for offline runs)
and the GPU throughput bench (`bench/sd_gpu.py`); 859,520,964 parameters at full width.
"""

from __future__ import annotations

from typing import Any

SD15_BLOCK_OUT_CHANNELS = (320, 640, 1280, 1280)
SD15_CROSS_ATTENTION_DIM = 768  # the width of the text encoder (CLIP ViT-L/14's text tower)


def sd15_unet_config(width_divisor: int = 1, norm_num_groups: int = 32) -> dict[str, Any]:
    """stable-diffusion-v1-5 unet/config.json (architecture fields), as keyword arguments of
    `diffusers.UNet2DConditionModel`.

    `width_divisor` divides the channel widths and the cross-attention width (a reduced model
    with every block and attention of the published one); the group norms need
    `norm_num_groups` to divide the divided widths.
    """
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "block_out_channels": tuple(c // width_divisor for c in SD15_BLOCK_OUT_CHANNELS),
        "layers_per_block": 2,
        "attention_head_dim": 8,  # diffusers' name for SD v1's 8 heads per attention
        "cross_attention_dim": SD15_CROSS_ATTENTION_DIM // width_divisor,
        "norm_num_groups": norm_num_groups,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "center_input_sample": False,
    }
