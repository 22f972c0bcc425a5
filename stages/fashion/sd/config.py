"""The `finetune_sd` params as a typed, checked config (see params.yaml for each one); the
inpainting fine-tune (`finetune_inpaint`) shares them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.sd.precision import PRECISIONS
from fashion.train.settings import schedule_steps

# full: every UNet (and text encoder) weight; lora: LoRA adapters on attention; lora_conv_in:
# those and the UNet's input convolution (an inpainting UNet widened to condition channels)
MODES = ("full", "lora", "lora_conv_in")
POSITIVE = (
    "resolution",
    "batch_size",
    "grad_accum",
    "checkpoint_every",
    "eval_every",
    "lora_rank",
)


@dataclass
class TrainConfig:
    """The `finetune_sd` params; the shared names as in `fashion.train.settings`."""

    mode: str = "full"  # full | lora | lora_conv_in (MODES)
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
    warmup_steps: int = 0
    n_images: int | str = "all"  # a seeded sample of the training rows, or all
    epochs: int | None = None  # null: `steps` steps of full batches
    batch_size: int = 32
    grad_accum: int = 1
    steps: int | None = 100  # with `epochs` set: a cap (null: none); resolved by FineTuner
    schedule_steps: int | None = None  # the LR schedule's length; None: `steps`
    max_grad_norm: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    cache_latents: bool = True
    vae_precision: str = "auto"  # the frozen VAE's dtype (fashion.sd.precision)
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    checkpoint_mirror: str | None = None  # a folder that survives the machine (Colab: Drive)
    eval_every: int = 100  # validation images
    validation_prompts: list[str] = field(default_factory=list)
    validation_denoising_steps: int = 20
    seed: int = 0
    stage: str = "finetune_sd"  # the params section, named in errors (not a param)

    @property
    def schedule(self) -> int:
        """The number of optimiser steps the LR schedule spans."""
        return schedule_steps(self.stage, self.steps, self.schedule_steps)

    @classmethod
    def from_params(cls, params: dict[str, Any], stage: str = "finetune_sd") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"stage"}
        unknown = sorted(set(params) - names)
        if unknown:
            raise PipelineError(f"{PARAMS_FILE}: unknown {stage} params {unknown}")
        cfg = cls(**params, stage=stage)
        problems = []
        if cfg.mode not in MODES:
            problems.append(f"mode must be full, lora or lora_conv_in, got {cfg.mode!r}")
        if cfg.vae_precision not in ("auto", *PRECISIONS):
            problems.append(
                f"vae_precision must be auto or one of {list(PRECISIONS)}, "
                f"got {cfg.vae_precision!r}"
            )
        if cfg.prediction_type not in (None, "epsilon", "v_prediction"):
            problems.append(
                f"prediction_type must be epsilon, v_prediction or null: {cfg.prediction_type!r}"
            )
        if not 0.0 <= cfg.caption_dropout < 1.0:
            problems.append(f"caption_dropout must be in [0, 1), got {cfg.caption_dropout}")
        if cfg.steps is None and cfg.epochs is None:
            problems.append("set steps, epochs or both")
        if cfg.keep_checkpoints < 0:
            problems.append(f"keep_checkpoints must be 0 or more, got {cfg.keep_checkpoints}")
        for key in POSITIVE:
            if int(getattr(cfg, key)) < 1:
                problems.append(f"{key} must be a positive integer, got {getattr(cfg, key)}")
        if problems:
            raise PipelineError(f"{PARAMS_FILE}: {stage}: " + "; ".join(problems))
        if cfg.steps is not None:
            cfg.schedule  # noqa: B018 (raises when schedule_steps < steps)
        return cfg
