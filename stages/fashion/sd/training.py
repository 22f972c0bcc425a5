"""Fine-tuning Stable Diffusion: diffusers' text-to-image recipe in reusable pieces.

The recipe (diffusers `examples/text_to_image/train_text_to_image.py`): pixels resized to
`resolution`, optionally flipped, scaled to [-1, 1]; latents = VAE sample x scaling_factor;
DDPM noise (plus an optional offset) at uniform timesteps; epsilon or v-prediction target;
optional min-SNR-gamma weighting; captions dropped to "" with a probability so
classifier-free guidance has an unconditional branch; EMA of the trained weights.
`FineTuner` holds the models under `accelerate` and runs one optimiser step at a time, on
the step-indexed batches of `fashion.train.batches`; `finetune_sd.py` drives it (checkpoints
with `fashion.train.checkpoints`, logging, saving). The params: `fashion.sd.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, cast_training_params

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.sd.config import TrainConfig
from fashion.sd.diffusion import diffusion_loss, drop_captions, padded_token_ids
from fashion.sd.lora import TEXT_LORA_TARGETS, UNET_LORA_TARGETS, LoraAdapters, lora_config
from fashion.sd.models import to_vae_pixels
from fashion.sd.precision import compute_dtype
from fashion.train.batches import StepBatches
from fashion.train.optimizer import adamw
from fashion.train.settings import fingerprint, fit_batch_size, training_steps

# Bumped when what a checkpoint holds changes (3: `fashion.train.checkpoints` folders).
CHECKPOINT_FORMAT = 3
# Params that steer validation only (and the section name): not in a checkpoint's fingerprint.
VALIDATION_ONLY = ("validation_prompts", "validation_denoising_steps", "stage")
# The modes that train LoRA adapters (and save them, not the whole pipeline).
LORA_MODES = ("lora", "lora_conv_in")


class EmaOnDevice:
    """An `EMAModel` as checkpointed by accelerate, restored onto the training device.

    accelerate loads registered objects' state onto the CPU, and `EMAModel.load_state_dict`
    keeps the tensors where they come, so on a GPU the first EMA step after a resume would
    mix CPU and CUDA tensors (diffusers' own script moves the EMA back in its load hook)."""

    def __init__(self, ema: EMAModel, device: torch.device | str) -> None:
        self.ema, self.device = ema, device

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)
        self.ema.to(self.device)


@dataclass
class TrainData:
    images: np.ndarray  # uint8 (N, H, W, 3)
    captions: list[str]


class FineTuner:
    """The base pipeline's components prepared for training under `accelerate`."""

    def __init__(
        self,
        pipe: StableDiffusionPipeline,
        noise_sched: DDPMScheduler,
        cfg: TrainConfig,
        data: TrainData,
        accelerator: Accelerator,
        source: str = "",
    ) -> None:
        """`source`: what the run starts from (`training_fingerprint` of the base model and
        data), part of the checkpoints' fingerprint."""
        self.cfg, self.data, self.accelerator = cfg, data, accelerator
        self.source = source
        if cfg.prediction_type is not None:
            noise_sched.register_to_config(prediction_type=cfg.prediction_type)
        self.noise_scheduler = noise_sched
        # sampling must predict what training taught the UNet to predict
        self.inference_scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=noise_sched.config.prediction_type
        )
        self.pipe = pipe
        self.tokenizer = pipe.tokenizer
        self.vae, self.text_encoder, self.unet = pipe.vae, pipe.text_encoder, pipe.unet
        self.world = accelerator.num_processes
        n = len(data.images)
        batch_size = fit_batch_size(cfg.stage, cfg.batch_size, n, self.world, cfg.grad_accum)
        try:
            self.batches = StepBatches(
                n,
                batch_size,
                self.world,
                accelerator.process_index,
                cfg.seed,
                cfg.grad_accum,
                keep_remainder=cfg.epochs is not None,
            )
        except PipelineError as err:
            raise PipelineError(f"{PARAMS_FILE}: {cfg.stage}: {err}") from err
        # the length follows from the images, batch and epochs (`fashion.train.settings`)
        steps = training_steps(cfg.stage, cfg.steps, cfg.epochs, self.batches.steps_per_epoch)
        self.cfg = cfg = dataclasses.replace(cfg, batch_size=batch_size, steps=steps)
        cfg.schedule  # noqa: B018 (raises when schedule_steps < the resolved steps)
        self.global_batch = cfg.batch_size * self.world * cfg.grad_accum
        self._setup_models()
        self.latent_cache = self.text_cache = None
        if cfg.cache_latents:
            self._build_caches()

    # --- set-up -------------------------------------------------------------------------
    def _setup_models(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            acc.mixed_precision, torch.float32
        )
        self.weight_dtype = weight_dtype
        # the frozen VAE only encodes: in the mixed-precision dtype as diffusers' recipe, or
        # `vae_precision` (half precision on a CPU with bf16 instructions: 2.4x faster)
        self.vae_dtype = self._vae_dtype(weight_dtype)
        # frozen weights cast to half precision: `save` writes their originals, not copies
        # rounded to 8 or 11 mantissa bits
        self.original_weights: dict[str, dict[str, torch.Tensor]] = {}
        self.vae.requires_grad_(False)
        self._cast_frozen("vae", self.vae_dtype)
        self.vae.eval()
        train_te = cfg.train_text_encoder
        if cfg.mode in LORA_MODES:
            self.unet.requires_grad_(False)
            self.text_encoder.requires_grad_(False)
            self.unet.add_adapter(lora_config(cfg.lora_rank, UNET_LORA_TARGETS))
            if cfg.mode == "lora_conv_in":
                # the adapters sit on attention only: input channels added to conv_in (zero
                # weights) would never learn without training conv_in itself
                self.unet.conv_in.requires_grad_(True)
            if train_te:
                try:
                    self.text_encoder.add_adapter(lora_config(cfg.lora_rank, TEXT_LORA_TARGETS))
                except ValueError as err:  # transformers 5 wants a peft release newer than 0.21
                    raise PipelineError(
                        f"{PARAMS_FILE}: {cfg.stage}: LoRA on the text encoder is not available "
                        f"with the installed transformers and peft ({err}); set "
                        "train_text_encoder: false, or mode: full"
                    ) from err
            self.unet.to(acc.device, dtype=weight_dtype)
            self.text_encoder.to(acc.device, dtype=weight_dtype)
        else:
            self.unet.requires_grad_(True)
            self.text_encoder.requires_grad_(train_te)
            self.unet.to(acc.device)
            if train_te:
                self.text_encoder.to(acc.device, dtype=torch.float32)
            else:
                self._cast_frozen("text_encoder", weight_dtype)
        models = [self.unet] + ([self.text_encoder] if train_te else [])
        cast_training_params(models, dtype=torch.float32)  # trained weights stay fp32
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if train_te:
                self.text_encoder.gradient_checkpointing_enable()
        self.unet.train()
        self.text_encoder.train(train_te)
        unet_params = [p for p in self.unet.parameters() if p.requires_grad]
        te_params = [p for p in self.text_encoder.parameters() if p.requires_grad]
        self.trainable = unet_params + te_params
        groups = [{"params": unet_params, "lr": cfg.lr}]
        if te_params:
            groups.append({"params": te_params, "lr": cfg.text_encoder_lr})
        optimizer = adamw(groups, acc.device, acc.mixed_precision)
        lr_scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=cfg.warmup_steps * self.world,
            num_training_steps=cfg.schedule * self.world,
        )
        self.ema = EMAModel(self.trainable, decay=cfg.ema_decay) if cfg.ema else None
        if self.ema is not None:
            self.ema.to(acc.device)
            acc.register_for_checkpointing(EmaOnDevice(self.ema, acc.device))
        self.adapters = (
            LoraAdapters(acc, self.pipe, conv_in=cfg.mode == "lora_conv_in")
            if cfg.mode in LORA_MODES
            else None
        )
        if self.adapters is not None:
            self.adapters.register_checkpoint_hooks()
        if train_te:
            self.unet, self.text_encoder, self.optimizer, self.lr_scheduler = acc.prepare(
                self.unet, self.text_encoder, optimizer, lr_scheduler
            )
        else:
            self.unet, self.optimizer, self.lr_scheduler = acc.prepare(
                self.unet, optimizer, lr_scheduler
            )

    def _vae_dtype(self, weight_dtype: torch.dtype) -> torch.dtype:
        """The frozen VAE's dtype (`vae_precision`, `fashion.sd.precision`): auto is the
        mixed-precision dtype, as diffusers' recipe, without one bf16 on a CPU that has it."""
        cfg, device = self.cfg, self.accelerator.device
        return compute_dtype(cfg.vae_precision, device, f"{cfg.stage}.vae_precision", weight_dtype)

    def _cast_frozen(self, name: str, dtype: torch.dtype) -> None:
        """Move the frozen pipeline component `name` to the device in `dtype`, keeping a
        copy of its weights first when that rounds them."""
        module = getattr(self, name)
        if dtype != module.dtype:
            self.original_weights[name] = {
                k: v.detach().cpu().clone() for k, v in module.state_dict().items()
            }
        module.to(self.accelerator.device, dtype=dtype)

    @torch.no_grad()
    def _build_caches(self) -> None:
        """Encode every image (both orientations if flipping) and, if frozen, every caption once."""
        cfg = self.cfg
        chunks = []
        for start in range(0, len(self.data.images), 64):
            pixels = to_vae_pixels(self.data.images[start : start + 64], cfg.resolution)
            views = [pixels, pixels.flip(-1)] if cfg.random_flip else [pixels]
            chunks.append(torch.stack([self.encode(v) for v in views], dim=1))
        self.latent_cache = torch.cat(chunks)  # (N, views, 2 * latent channels, h, w)
        if not cfg.train_text_encoder:
            unique = sorted(set(self.data.captions) | {""})
            self.caption_index = {c: i for i, c in enumerate(unique)}
            self.text_cache = torch.cat(
                [self._encode_text(unique[i : i + 256]) for i in range(0, len(unique), 256)]
            )

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The VAE's latent moments (mean and log-variance) of pixels in [-1, 1], in the
        VAE's dtype (a cache of them takes half the memory in half precision)."""
        pixels = pixels.to(self.accelerator.device, self.vae_dtype)
        return self.vae.encode(pixels).latent_dist.parameters

    def _encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = padded_token_ids(self.tokenizer, captions).to(self.accelerator.device)
        return self.text_encoder(ids, return_dict=False)[0]

    # --- batches ------------------------------------------------------------------------
    def batch_rows(self, step: int, micro: int) -> np.ndarray:
        """This process's rows for optimiser step `step`, micro-batch `micro`."""
        return self.batches.rows(step * self.cfg.grad_accum + micro)

    def epoch_of(self, step: int) -> int:
        return self.batches.epoch_of(step)

    def micro_batch(
        self, step: int, micro: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(latents x scaling_factor, text hidden states, `conditioning`) of one micro-batch."""
        cfg = self.cfg
        rows = self.batch_rows(step, micro)
        rng = np.random.default_rng([cfg.seed, step, micro, self.accelerator.process_index, 1])
        flip = rng.random(len(rows)) < 0.5 if cfg.random_flip else np.zeros(len(rows), bool)
        captions = drop_captions([self.data.captions[r] for r in rows], cfg.caption_dropout, rng)
        with torch.no_grad():
            if self.latent_cache is not None:
                moments = self.latent_cache[
                    torch.as_tensor(rows), torch.as_tensor(flip.astype(np.int64))
                ]
            else:
                pixels = to_vae_pixels(self.data.images[rows], cfg.resolution)
                pixels[torch.as_tensor(flip)] = pixels[torch.as_tensor(flip)].flip(-1)
                moments = self.encode(pixels)
            # sampled in fp32 whatever the VAE's dtype: the noise is drawn in fp32
            latents = DiagonalGaussianDistribution(moments.float()).sample()
            latents = latents * self.vae.config.scaling_factor
        if self.text_cache is not None:
            hidden = self.text_cache[[self.caption_index[c] for c in captions]]
        elif cfg.train_text_encoder:
            hidden = self._encode_text(captions)
        else:
            with torch.no_grad():
                hidden = self._encode_text(captions)
        return latents.float(), hidden, self.conditioning(rows, flip, rng)

    def conditioning(
        self, rows: np.ndarray, flip: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor | None:
        """Input channels the UNet reads beside the noisy latents: none for text-to-image
        (an inpainting fine-tuner adds the mask and the masked image's latents)."""
        return None

    # --- one optimiser step ---------------------------------------------------------------
    def train_step(self, step: int) -> float:
        """One optimiser step (grad_accum micro-batches); returns the loss averaged over the
        micro-batches and processes."""
        acc, losses = self.accelerator, []
        for micro in range(self.cfg.grad_accum):
            with acc.accumulate(self.unet, self.text_encoder):
                latents, hidden, conditioning = self.micro_batch(step, micro)
                with acc.autocast():
                    loss = diffusion_loss(
                        self.unet,
                        latents,
                        hidden,
                        self.noise_scheduler,
                        self.cfg.snr_gamma,
                        self.cfg.noise_offset,
                        conditioning,
                    )
                losses.append(acc.gather(loss.detach()).mean())
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.trainable)
        return float(torch.stack(losses).mean())

    # --- outputs --------------------------------------------------------------------------
    def inference_pipeline(self, use_ema: bool) -> StableDiffusionPipeline:
        """A pipeline on the current weights (EMA weights copied in when `use_ema`)."""
        if use_ema and self.ema is not None:
            self.ema.copy_to(self.trainable)
        unwrap = self.accelerator.unwrap_model
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=unwrap(self.text_encoder),
            tokenizer=self.tokenizer,
            unet=unwrap(self.unet),
            scheduler=self.inference_scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def save(self, out_dir: Path) -> None:
        """Full: a pipeline `from_pretrained` loads; LoRA: the adapters in diffusers' format
        (`LORA_WEIGHTS`) and the scheduler, with lora_conv_in also `CONV_IN_WEIGHTS`."""
        pipe = self.inference_pipeline(use_ema=True)
        if self.cfg.mode == "full":
            pipe.vae.to(torch.float32)
            pipe.text_encoder.to(torch.float32)
            for name, weights in self.original_weights.items():  # not their rounded copies
                getattr(pipe, name).load_state_dict(weights)
            pipe.save_pretrained(out_dir)
            return
        models = [pipe.unet] + ([pipe.text_encoder] if self.cfg.train_text_encoder else [])
        self.adapters.save(models, str(out_dir))
        pipe.scheduler.save_pretrained(out_dir / "scheduler")  # carries the prediction type

    # --- checkpoints ------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (`fashion.train.settings`)."""
        return fingerprint(
            dataclasses.asdict(self.cfg),
            self.cfg.schedule,
            self.source,
            self.world,
            self.accelerator.mixed_precision,
            also_ignored=VALIDATION_ONLY,
            checkpoint_format=CHECKPOINT_FORMAT,
        )
