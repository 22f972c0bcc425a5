"""Fine-tuning Stable Diffusion: diffusers' text-to-image recipe in reusable pieces.

The recipe (diffusers `examples/text_to_image/train_text_to_image.py`): pixels resized to
`resolution`, optionally flipped, scaled to [-1, 1]; latents = VAE sample x scaling_factor;
DDPM noise (plus an optional offset) at uniform timesteps; epsilon or v-prediction target;
optional min-SNR-gamma weighting; captions dropped to "" with a probability so
classifier-free guidance has an unconditional branch; EMA of the trained weights.
`FineTuner` holds the models under `accelerate` and runs one optimiser step at a time;
`finetune_sd.py` drives it (checkpoints, logging, saving).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.optimization import get_scheduler
from diffusers.training_utils import (
    EMAModel,
    _set_state_dict_into_text_encoder,
    cast_training_params,
    compute_snr,
)
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.sd.models import LORA_WEIGHTS, to_vae_pixels
from fashion.train.checkpoint_mirror import mirror_checkpoint, restore_checkpoint

CHECKPOINT_PREFIX = "checkpoint-"
# Bumped when what a checkpoint folder holds changes (2: LoRA checkpoints hold the adapters only).
CHECKPOINT_FORMAT = 2
UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
# Settings that may change between a checkpoint and its resumption (the rest must match).
RESUMABLE_CHANGES = {
    "max_steps",
    "checkpoint_every",
    "checkpoints_total_limit",
    "checkpoint_mirror",
    "validation_every",
    "validation_prompts",
    "validation_steps",
}


@dataclass
class TrainConfig:
    """The `finetune_sd` params (see params.yaml for what each one does)."""

    mode: str = "full"  # full | lora
    resolution: int = 64
    random_flip: bool = True
    caption_dropout: float = 0.1
    prediction_type: str | None = None  # epsilon | v_prediction | None: the scheduler's
    snr_gamma: float | None = None
    noise_offset: float = 0.0
    train_text_encoder: bool = True
    lora_rank: int = 4
    lr: float = 1e-4
    text_encoder_lr: float = 1e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 100
    max_grad_norm: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    cache_latents: bool = True
    checkpoint_every: int = 100
    checkpoints_total_limit: int = 2
    checkpoint_mirror: str | None = None  # a folder that survives the machine (Colab: Drive)
    validation_every: int = 100
    validation_prompts: list[str] = field(default_factory=list)
    validation_steps: int = 20
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise PipelineError(f"{PARAMS_FILE}: unknown finetune_sd params {unknown}")
        cfg = cls(**params)
        problems = []
        if cfg.mode not in ("full", "lora"):
            problems.append(f"mode must be full or lora, got {cfg.mode!r}")
        if cfg.prediction_type not in (None, "epsilon", "v_prediction"):
            problems.append(
                f"prediction_type must be epsilon, v_prediction or null: {cfg.prediction_type!r}"
            )
        if not 0.0 <= cfg.caption_dropout < 1.0:
            problems.append(f"caption_dropout must be in [0, 1), got {cfg.caption_dropout}")
        for key in (
            "resolution",
            "batch_size",
            "grad_accum",
            "max_steps",
            "checkpoint_every",
            "checkpoints_total_limit",
            "validation_every",
            "lora_rank",
        ):
            if int(getattr(cfg, key)) < 1:
                problems.append(f"{key} must be a positive integer, got {getattr(cfg, key)}")
        if problems:
            raise PipelineError(f"{PARAMS_FILE}: finetune_sd: " + "; ".join(problems))
        return cfg


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
) -> torch.Tensor:
    """The denoising loss of one batch, as in diffusers' text-to-image script."""
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


@dataclass
class TrainData:
    images: np.ndarray  # uint8 (N, H, W, 3)
    captions: list[str]


def lora_config(rank: int, targets: list[str] | tuple[str, ...]) -> LoraConfig:
    """LoRA adapters as in diffusers' text-to-image LoRA script (alpha = rank, gaussian init)."""
    return LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets)
    )


class FineTuner:
    """The base pipeline's components prepared for training under `accelerate`."""

    def __init__(
        self,
        pipe: StableDiffusionPipeline,
        noise_sched: DDPMScheduler,
        cfg: TrainConfig,
        data: TrainData,
        accelerator: Accelerator,
        fingerprint: str = "",
    ) -> None:
        """`fingerprint`: what the run starts from (`hub.training_fingerprint`); a checkpoint
        of another base model or data is not resumed."""
        self.cfg, self.data, self.accelerator = cfg, data, accelerator
        self.fingerprint = fingerprint
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
        self.global_batch = cfg.batch_size * self.world * cfg.grad_accum
        if len(data.images) < self.global_batch:
            raise PipelineError(
                f"{PARAMS_FILE}: finetune_sd: {len(data.images)} training images, fewer than one "
                f"global batch ({cfg.batch_size} x {self.world} processes x {cfg.grad_accum})"
            )
        self.steps_per_epoch = len(data.images) // self.global_batch
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
        self.vae.requires_grad_(False)
        self.vae.to(acc.device).eval()
        if weight_dtype != torch.float32:
            self.vae.to(dtype=weight_dtype)
        train_te = cfg.train_text_encoder
        if cfg.mode == "lora":
            self.unet.requires_grad_(False)
            self.text_encoder.requires_grad_(False)
            self.unet.add_adapter(lora_config(cfg.lora_rank, UNET_LORA_TARGETS))
            if train_te:
                try:
                    self.text_encoder.add_adapter(lora_config(cfg.lora_rank, TEXT_LORA_TARGETS))
                except ValueError as err:  # transformers 5 wants a peft release newer than 0.21
                    raise PipelineError(
                        f"{PARAMS_FILE}: finetune_sd: LoRA on the text encoder is not available "
                        f"with the installed transformers and peft ({err}); set "
                        "train_text_encoder: false, or mode: full"
                    ) from err
            self.unet.to(acc.device, dtype=weight_dtype)
            self.text_encoder.to(acc.device, dtype=weight_dtype)
        else:
            self.unet.requires_grad_(True)
            self.text_encoder.requires_grad_(train_te)
            self.unet.to(acc.device)
            self.text_encoder.to(acc.device, dtype=torch.float32 if train_te else weight_dtype)
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
        optimizer = torch.optim.AdamW(groups)
        lr_scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=cfg.lr_warmup_steps * self.world,
            num_training_steps=cfg.max_steps * self.world,
        )
        self.ema = EMAModel(self.trainable, decay=cfg.ema_decay) if cfg.ema else None
        if self.ema is not None:
            self.ema.to(acc.device)
            acc.register_for_checkpointing(self.ema)
        if cfg.mode == "lora":
            acc.register_save_state_pre_hook(self._save_adapters_hook)
            acc.register_load_state_pre_hook(self._load_adapters_hook)
        if train_te:
            self.unet, self.text_encoder, self.optimizer, self.lr_scheduler = acc.prepare(
                self.unet, self.text_encoder, optimizer, lr_scheduler
            )
        else:
            self.unet, self.optimizer, self.lr_scheduler = acc.prepare(
                self.unet, optimizer, lr_scheduler
            )

    # LoRA checkpoints hold the adapters only, not the frozen base (as diffusers' LoRA script):
    # accelerate hands these hooks the prepared models; a popped model is not saved/loaded again.
    def _save_adapters_hook(self, models: list, weights: list, output_dir: str) -> None:
        layers = self._lora_layers(models)
        weights.clear()
        if self.accelerator.is_main_process:
            StableDiffusionPipeline.save_lora_weights(
                output_dir, **layers, weight_name=LORA_WEIGHTS
            )

    def _load_adapters_hook(self, models: list, input_dir: str) -> None:
        unet, text_encoder = self._unwrapped_parts(models)
        models.clear()
        state, _ = StableDiffusionPipeline.lora_state_dict(input_dir, weight_name=LORA_WEIGHTS)
        unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
        set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), "default")
        if text_encoder is not None:
            _set_state_dict_into_text_encoder(state, "text_encoder.", text_encoder)
        cast_training_params([m for m in (unet, text_encoder) if m is not None], torch.float32)

    def _unwrapped_parts(self, models: list) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """(UNet, text encoder or None) among the prepared `models`."""
        unwrapped = [self.accelerator.unwrap_model(m) for m in models]
        unet = next(m for m in unwrapped if isinstance(m, type(self.pipe.unet)))
        text = [m for m in unwrapped if isinstance(m, type(self.pipe.text_encoder))]
        return unet, (text[0] if text else None)

    def _lora_layers(self, models: list) -> dict[str, dict | None]:
        """The adapter weights of the prepared `models`, in diffusers' format."""
        unet, text_encoder = self._unwrapped_parts(models)
        te_layers = None
        if text_encoder is not None:
            te_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(text_encoder))
        return {
            "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
            "text_encoder_lora_layers": te_layers,
        }

    @torch.no_grad()
    def _build_caches(self) -> None:
        """Encode every image (both orientations if flipping) and, if frozen, every caption once."""
        cfg, dev = self.cfg, self.accelerator.device
        chunks = []
        for start in range(0, len(self.data.images), 64):
            pixels = to_vae_pixels(self.data.images[start : start + 64], cfg.resolution)
            views = [pixels, pixels.flip(-1)] if cfg.random_flip else [pixels]
            chunks.append(
                torch.stack(
                    [
                        self.vae.encode(v.to(dev, self.weight_dtype)).latent_dist.parameters
                        for v in views
                    ],
                    dim=1,
                )
            )
        self.latent_cache = torch.cat(chunks)  # (N, views, 2 * latent channels, h, w)
        if not cfg.train_text_encoder:
            unique = sorted(set(self.data.captions) | {""})
            self.caption_index = {c: i for i, c in enumerate(unique)}
            self.text_cache = torch.cat(
                [self._encode_text(unique[i : i + 256]) for i in range(0, len(unique), 256)]
            )

    def _encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = padded_token_ids(self.tokenizer, captions).to(self.accelerator.device)
        return self.text_encoder(ids, return_dict=False)[0]

    # --- batches ------------------------------------------------------------------------
    def batch_rows(self, step: int, micro: int) -> np.ndarray:
        """This process's rows for optimiser step `step`, micro-batch `micro`: a function of the
        step alone (a seeded permutation per epoch), so a resumed run sees the same batches."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.data.images))
        bs = self.cfg.batch_size
        start = (
            (pos * self.cfg.grad_accum + micro) * self.world + self.accelerator.process_index
        ) * bs
        return np.sort(perm[start : start + bs])

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def micro_batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents x scaling_factor, text hidden states) of one micro-batch."""
        cfg, dev = self.cfg, self.accelerator.device
        rows = self.batch_rows(step, micro)
        rng = np.random.default_rng([cfg.seed, step, micro, self.accelerator.process_index, 1])
        flip = rng.random(len(rows)) < 0.5 if cfg.random_flip else np.zeros(len(rows), bool)
        captions = drop_captions([self.data.captions[r] for r in rows], cfg.caption_dropout, rng)
        with torch.no_grad():
            if self.latent_cache is not None:
                params = self.latent_cache[
                    torch.as_tensor(rows), torch.as_tensor(flip.astype(np.int64))
                ]
                dist = DiagonalGaussianDistribution(params)
            else:
                pixels = to_vae_pixels(self.data.images[rows], cfg.resolution)
                pixels[torch.as_tensor(flip)] = pixels[torch.as_tensor(flip)].flip(-1)
                dist = self.vae.encode(pixels.to(dev, self.weight_dtype)).latent_dist
            latents = dist.sample() * self.vae.config.scaling_factor
        if self.text_cache is not None:
            hidden = self.text_cache[[self.caption_index[c] for c in captions]]
        elif cfg.train_text_encoder:
            hidden = self._encode_text(captions)
        else:
            with torch.no_grad():
                hidden = self._encode_text(captions)
        return latents.float(), hidden

    # --- one optimiser step ---------------------------------------------------------------
    def train_step(self, step: int) -> float:
        """One optimiser step (grad_accum micro-batches); returns the loss averaged over the
        micro-batches and processes."""
        acc, losses = self.accelerator, []
        for micro in range(self.cfg.grad_accum):
            with acc.accumulate(self.unet, self.text_encoder):
                latents, hidden = self.micro_batch(step, micro)
                with acc.autocast():
                    loss = diffusion_loss(
                        self.unet,
                        latents,
                        hidden,
                        self.noise_scheduler,
                        self.cfg.snr_gamma,
                        self.cfg.noise_offset,
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
        """Full: a pipeline `from_pretrained` loads; LoRA: the adapters in diffusers' format."""
        pipe = self.inference_pipeline(use_ema=True)
        if self.cfg.mode == "full":
            pipe.vae.to(torch.float32)
            pipe.text_encoder.to(torch.float32)
            pipe.save_pretrained(out_dir)
            return
        models = [pipe.unet] + ([pipe.text_encoder] if self.cfg.train_text_encoder else [])
        StableDiffusionPipeline.save_lora_weights(
            out_dir, **self._lora_layers(models), weight_name=LORA_WEIGHTS
        )
        pipe.scheduler.save_pretrained(out_dir / "scheduler")  # carries the prediction type

    # --- checkpoints ------------------------------------------------------------------------
    def resume_key(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (the model and data, not the length)."""
        settings = {
            k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in RESUMABLE_CHANGES
        }
        return {
            **settings,
            "world": self.world,
            "n_images": len(self.data.images),
            "source": self.fingerprint,
            "checkpoint_format": CHECKPOINT_FORMAT,
        }

    def save_checkpoint(self, ckpt_root: Path, step: int) -> None:
        acc = self.accelerator
        path = ckpt_root / f"{CHECKPOINT_PREFIX}{step}"
        acc.save_state(str(path))
        if acc.is_main_process:
            (path / "train_config.json").write_text(json.dumps(self.resume_key(), indent=1))
            for old in list_checkpoints(ckpt_root)[: -self.cfg.checkpoints_total_limit]:
                shutil.rmtree(old)
            if self.cfg.checkpoint_mirror:
                mirror_checkpoint(ckpt_root, path, Path(self.cfg.checkpoint_mirror))
        acc.wait_for_everyone()

    def resume(self, ckpt_root: Path) -> int:
        """Load the latest checkpoint written with the same settings; the step to go on from."""
        if self.accelerator.is_main_process:  # a fresh machine: the mirrored copy, if any
            restore_checkpoint(ckpt_root, self.cfg.checkpoint_mirror, is_checkpoint)
        self.accelerator.wait_for_everyone()
        key = json.loads(json.dumps(self.resume_key()))
        for path in reversed(list_checkpoints(ckpt_root)):
            meta = path / "train_config.json"
            if meta.is_file() and json.loads(meta.read_text()) == key:
                self.accelerator.load_state(str(path))
                return int(path.name.removeprefix(CHECKPOINT_PREFIX))
        return 0


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", path.name) is not None


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders under `root`, oldest step first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if is_checkpoint(p)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))
