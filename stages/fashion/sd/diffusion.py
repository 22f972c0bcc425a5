"""The denoising objective of SD fine-tuning, as in diffusers' text-to-image script: caption
dropout for classifier-free guidance, padded token ids, and the noise-prediction loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from fashion.core.stage import PipelineError


def drop_captions(captions: list[str], p: float, rng: np.random.Generator) -> list[str]:
    """Each caption replaced by "" with probability `p` (the unconditional branch of CFG)."""
    keep = rng.random(len(captions)) >= p
    return [c if k else "" for c, k in zip(captions, keep, strict=True)]


def padded_token_ids(tokenizer: Any, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def diffusion_loss(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    scheduler: DDPMScheduler,
    snr_gamma: float | None = None,
    noise_offset: float = 0.0,
    conditioning: torch.Tensor | None = None,
) -> torch.Tensor:
    """The denoising loss of one batch, as in diffusers' text-to-image script.

    `conditioning`: channels the UNet reads beside the noisy latents (an inpainting UNet's
    mask and masked-image latents, concatenated after them as its pipeline does)."""
    noise = torch.randn_like(latents)
    if noise_offset:  # https://www.crosslabs.org//blog/diffusion-with-offset-noise
        noise += noise_offset * torch.randn(
            (latents.shape[0], latents.shape[1], 1, 1), device=latents.device
        )
    bsz = latents.shape[0]
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (bsz,), device=latents.device
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "epsilon":
        target = noise
    elif scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise PipelineError(f"unsupported prediction type {scheduler.config.prediction_type}")
    if conditioning is not None:
        noisy = torch.cat([noisy, conditioning.to(noisy.dtype)], dim=1)
    pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float(), reduction="mean")
    # min-SNR-gamma weighting (https://arxiv.org/abs/2303.09556)
    snr = compute_snr(scheduler, timesteps)
    weights = torch.stack([snr, snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
    weights = (
        weights / snr if scheduler.config.prediction_type == "epsilon" else weights / (snr + 1)
    )
    loss = F.mse_loss(pred.float(), target.float(), reduction="none")
    return (loss.mean(dim=list(range(1, loss.ndim))) * weights).mean()
