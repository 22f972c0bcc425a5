"""The `finetune_sd` params as a typed config (see params.yaml for each one; the params model
checks their values before a stage starts); the inpainting fine-tune shares them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.train.settings import schedule_steps


@dataclass
class TrainConfig:
    """The `finetune_sd` params; the shared names as in `fashion.train.settings`."""

    mode: str = "full"  # full | lora | lora_conv_in (LoRA and the UNet's input convolution)
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
        """The config of a stage's params (`with_shared`), whose values the params model has
        checked; a key the config lacks is an error here."""
        names = {f.name for f in dataclasses.fields(cls)} - {"stage"}
        unknown = sorted(set(params) - names)
        if unknown:
            raise PipelineError(f"{PARAMS_FILE}: unknown {stage} params {unknown}")
        cfg = cls(**params, stage=stage)
        if cfg.steps is not None:
            cfg.schedule  # noqa: B018 (raises when schedule_steps < steps)
        return cfg
