"""Stable Diffusion models: a tiny one built offline, the VAE's pretraining, and loading.

`tiny` builds every SD component from small configs (UNet, VAE, CLIP text encoder and
a tokenizer trained on the captions) and saves a `StableDiffusionPipeline`, so the base,
fine-tuning and generation stages load tiny and real models through `from_pretrained`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from fashion.core.params import PARAMS_FILE
from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.data.tokenizer import train_caption_tokenizer
from fashion.sd.conv_in import grown_unet
from fashion.train.optimizer import adamw

TINY = "tiny"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# mode lora_conv_in: the trained UNet input convolution beside the adapters (keys weight, bias)
CONV_IN_WEIGHTS = "conv_in.safetensors"
VAE_LOSSES = ("mse", "l1")

# The scheduler of stable-diffusion-v1-5 (scheduler/scheduler_config.json).
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


def build_tiny_sd(
    captions: Iterable[str], tiny: dict[str, Any], seed: int = 0
) -> StableDiffusionPipeline:
    """A randomly initialised small SD pipeline from the `base_sd.tiny` params.

    The VAE halves the resolution once per block after the first (`vae_channels`; the
    default's four blocks give 8 x 8 latents at 64 px, SD's factor 8). Its group norms
    take `vae_norm_groups` groups: one group keeps the ratios between all channels, where
    a colour lives, which per-group normalisation divides away. The UNet attends to the
    text only at its lowest level, where attention is cheap, and with `unet_pooled_text`
    also gets the attention-pooled caption in its timestep embedding (diffusers'
    `addition_embed_type="text"`). The text config's bos/eos/pad ids are the trained
    tokenizer's: CLIP pools the hidden state at the EOS token, and a wrong id pools another
    token silently.
    """
    tokenizer = train_caption_tokenizer(captions, int(tiny["vocab_size"]))
    tokenizer.model_max_length = int(tiny["max_length"])
    torch.manual_seed(seed)
    width = int(tiny["text_width"])
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=int(tiny["text_layers"]),
            num_attention_heads=int(tiny["text_heads"]),
            max_position_embeddings=int(tiny["max_length"]),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae_channels = [int(c) for c in tiny["vae_channels"]]
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        block_out_channels=vae_channels,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=int(tiny.get("vae_norm_groups", 8)),
        sample_size=int(tiny["resolution"]),
        mid_block_add_attention=False,
    )
    unet_channels = [int(c) for c in tiny["unet_channels"]]
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=int(tiny["resolution"]) // 2 ** (len(vae_channels) - 1),
        block_out_channels=unet_channels,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        layers_per_block=int(tiny["unet_layers"]),
        cross_attention_dim=width,
        attention_head_dim=unet_heads(tiny),  # diffusers' name for the heads of each block
        norm_num_groups=8,
        # "text": the attention-pooled caption is added to the timestep embedding, which
        # scales and shifts every ResNet block, so global attributes (the garment's colour)
        # reach the full-resolution levels that have no cross-attention.
        addition_embed_type="text" if tiny.get("unet_pooled_text", False) else None,
        addition_embed_type_num_heads=int(tiny["text_heads"]),
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def unet_heads(tiny: dict[str, Any]) -> tuple[int, ...]:
    """The attention heads of each UNet block that give `unet_head_dim` channels a head.

    `UNet2DConditionModel`'s `attention_head_dim` is a head count (a diffusers naming quirk;
    SD v1's 8 is 8 heads), so passing the head width there built 32 heads of 4 channels
    until 2026-12-06, 6x slower attention for the same weights (bench/unet_heads.py)."""
    head_dim = int(tiny["unet_head_dim"])
    channels = [int(c) for c in tiny["unet_channels"]]
    if head_dim < 1 or channels[-1] % head_dim:
        raise PipelineError(
            f"{PARAMS_FILE}: base_sd.tiny.unet_head_dim must divide the attention level's "
            f"{channels[-1]} channels, got {head_dim}"
        )
    return tuple(max(1, c // head_dim) for c in channels)


def to_vae_pixels(images: np.ndarray | torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 HWC images (b, H, W, 3) -> float (b, 3, r, r) in [-1, 1], what SD's VAE expects."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0)


def random_crops(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One random `size` x `size` window of each image of (b, c, H, W)."""
    tops = rng.integers(0, x.shape[-2] - size + 1, len(x))
    lefts = rng.integers(0, x.shape[-1] - size + 1, len(x))
    return torch.stack(
        [im[:, t : t + size, u : u + size] for im, t, u in zip(x, tops, lefts, strict=True)]
    )


def balanced_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-item sampling weights count(label)^-power: 0 draws uniformly, 1 draws every
    label equally often."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse].astype(np.float64) ** -float(power)


def pretrain_vae(
    vae: AutoencoderKL,
    images: np.ndarray,
    resolution: int,
    steps: int,
    batch_size: int,
    lr: float,
    kl_weight: float,
    seed: int = 0,
    crop: int | None = None,
    loss: str = "mse",
    on_step: Callable[[int, float], None] | None = None,
    chroma_weight: float = 0.0,
    channels_last: bool = True,
    sample_weights: np.ndarray | None = None,
    precision: torch.dtype = torch.float32,
) -> list[float]:
    """Train the VAE to reconstruct `images` (uint8 HWC), then set its `scaling_factor`.

    With `crop`, each step trains on a random `crop` x `crop` window of every image: the
    tiny VAE is convolutional (no attention), so windows teach it the same local mapping at
    (resolution / crop)^2 less cost per step, as SD's VAE was trained on 256 px crops.
    `loss` is the reconstruction term: "l1" (as SD's VAE) pulls flat garment colours to
    their value harder than "mse", which leaves them regressed towards the mean colour.
    `chroma_weight` adds that term again on the colour less its lightness (each pixel less
    its grey level): mostly-grey backgrounds and skin dominate the plain term, and a tiny VAE
    then learns lightness long before saturated hues (red, purple).
    The scaling factor makes the latents unit-variance (SD v1's 0.18215 was found the
    same way), so the UNet sees noise and latents of one scale. Returns the losses;
    `on_step(step, loss)` (steps counted from 1) sees each as it comes, e.g. to log a curve.
    `sample_weights` (one per image, any scale): how often each image is drawn into a batch
    (None: uniformly). `channels_last` trains in the NHWC layout, where oneDNN's
    convolutions are faster (bench/vae_step.py); the VAE is handed back in the default
    layout. `precision` bf16: the forward passes under bf16 autocast (weights, gradients
    and the loss stay fp32), 1.7x faster a step on a CPU with bf16 instructions
    (bench/cpu_bf16.py); `fashion.sd.precision.compute_dtype` says where it pays.
    """
    reconstruction = {"mse": F.mse_loss, "l1": F.l1_loss}[loss]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = adamw(vae.parameters(), next(vae.parameters()).device, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # ends with fine steps
    losses = []
    layout = torch.channels_last if channels_last else torch.contiguous_format
    uniform = sample_weights is None or np.all(sample_weights == sample_weights[0])
    p = None if uniform else sample_weights / sample_weights.sum()  # None: draws as before
    device = next(vae.parameters()).device
    autocast = torch.autocast(device.type, precision, enabled=precision != torch.float32)
    vae.to(memory_format=layout).train()
    for step in tqdm(range(1, steps + 1), desc="pretrain VAE", mininterval=5):
        x = to_vae_pixels(images[np.sort(rng.choice(len(images), batch_size, p=p))], resolution)
        if crop is not None and crop < resolution:
            x = random_crops(x, crop, rng)
        x = x.to(device).contiguous(memory_format=layout)
        with autocast:
            moments = vae.encode(x).latent_dist.parameters
        posterior = DiagonalGaussianDistribution(moments.float())  # the noise drawn in fp32
        with autocast:
            recon = vae.decode(posterior.sample()).sample.float()
        total = reconstruction(recon, x) + kl_weight * posterior.kl().mean()
        if chroma_weight > 0:  # the colour apart from its lightness: each pixel less its grey
            total = total + chroma_weight * reconstruction(
                recon - recon.mean(1, keepdim=True), x - x.mean(1, keepdim=True)
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        schedule.step()
        losses.append(total.item())
        if on_step is not None:
            on_step(step, losses[-1])
    vae.to(memory_format=torch.contiguous_format).eval()
    with torch.no_grad():
        sample = images[rng.choice(len(images), min(len(images), 256), replace=False)]
        latents = torch.cat(
            [
                vae.encode(to_vae_pixels(b, resolution)).latent_dist.sample()
                for b in np.array_split(sample, math.ceil(len(sample) / 64))
            ]
        )
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return losses


def load_sd(
    pretrained: str | Path,
    revision: str | None = None,
    pipeline_class: type[StableDiffusionPipeline] = StableDiffusionPipeline,
    **kwargs: Any,
) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline (`pipeline_class`, e.g. the inpainting one) from a hub id
    or directory, without the safety checker."""
    try:
        return pipeline_class.from_pretrained(
            str(pretrained),
            revision=revision,
            safety_checker=None,
            requires_safety_checker=False,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise PipelineError(
            f"{pretrained}: cannot load a {pipeline_class.__name__} ({err})"
        ) from err


def save_conv_in(unet: UNet2DConditionModel, folder: str | Path) -> None:
    """Write `unet.conv_in`'s weight and bias to `folder`/CONV_IN_WEIGHTS."""
    state = {k: v.detach().cpu().contiguous() for k, v in unet.conv_in.state_dict().items()}
    save_file(state, Path(folder) / CONV_IN_WEIGHTS)


def read_conv_in(folder: str | Path) -> dict[str, torch.Tensor]:
    """The conv_in weights `save_conv_in` wrote to `folder`."""
    return load_file(Path(folder) / CONV_IN_WEIGHTS)


def load_conv_in(unet: UNet2DConditionModel, folder: str | Path) -> UNet2DConditionModel:
    """`unet` with the conv_in of `folder` loaded (in `unet`'s dtype), first widened with
    zero channels (a copy, `grown_unet`) to the input channels of the saved weight."""
    state = read_conv_in(folder)
    channels = int(state["weight"].shape[1])
    if channels != unet.config.in_channels:
        try:
            unet = grown_unet(unet, channels)
        except ValueError as err:
            raise PipelineError(
                f"{folder}: {CONV_IN_WEIGHTS} does not fit the base's UNet ({err})"
            ) from err
    unet.conv_in.load_state_dict(state)
    return unet


def fuse_lora(pipe: StableDiffusionPipeline, lora_dir: Path) -> StableDiffusionPipeline:
    """`pipe` with the LoRA weights of `lora_dir` baked in and the adapter layers dropped
    (generation runs a plain UNet with the fine-tuned weights), the trained conv_in when
    `lora_dir` holds one (mode lora_conv_in: the UNet widened to its input channels), and
    the fine-tune's scheduler (its prediction type, not the base's) when it saved one."""
    if (lora_dir / CONV_IN_WEIGHTS).is_file():
        pipe.unet = load_conv_in(pipe.unet, lora_dir)
    pipe.load_lora_weights(lora_dir, weight_name=LORA_WEIGHTS)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    if (lora_dir / "scheduler").is_dir():
        pipe.scheduler = type(pipe.scheduler).from_pretrained(lora_dir, subfolder="scheduler")
    return pipe


def load_base_sd(base_dir: str | Path, **kwargs: Any) -> StableDiffusionPipeline:
    """The base pipeline recorded by the base_sd stage in `base_dir/source.json`."""
    pretrained, revision = read_source(base_dir)
    return load_sd(pretrained, revision, **kwargs)


def load_finetuned_sd(
    sd_dir: str | Path, base_dir: str | Path, **kwargs: Any
) -> StableDiffusionPipeline:
    """The fine-tuned pipeline: a full saved pipeline, or the base one with LoRA weights loaded."""
    sd_dir = Path(sd_dir)
    if (sd_dir / "model_index.json").is_file():
        return load_sd(sd_dir, **kwargs)
    if (sd_dir / LORA_WEIGHTS).is_file():
        return fuse_lora(load_base_sd(base_dir, **kwargs), sd_dir)
    raise PipelineError(f"{sd_dir}: neither a saved pipeline nor {LORA_WEIGHTS} (run finetune_sd)")


def noise_scheduler(pretrained: str | Path, revision: str | None = None) -> DDPMScheduler:
    """The training noise schedule: DDPM with the base model's betas (as diffusers' recipe)."""
    return DDPMScheduler.from_pretrained(str(pretrained), subfolder="scheduler", revision=revision)
