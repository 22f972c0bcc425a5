"""LoRA adapters for SD fine-tuning: their config, their weights in diffusers' format, and
the `accelerate` checkpoint hooks that save and load only them.

A LoRA checkpoint holds the adapters, not the frozen base (as diffusers' LoRA script):
accelerate hands the hooks the prepared models; a model the hook pops is not saved or
loaded again by accelerate itself. In mode lora_conv_in the UNet's trained input
convolution is saved and loaded beside the adapters (`CONV_IN_WEIGHTS`).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from diffusers import StableDiffusionPipeline
from diffusers.training_utils import _set_state_dict_into_text_encoder, cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict

from fashion.sd.models import LORA_WEIGHTS, read_conv_in, save_conv_in

UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_config(rank: int, targets: list[str] | tuple[str, ...]) -> LoraConfig:
    """LoRA adapters as in diffusers' text-to-image LoRA script (alpha = rank, gaussian init)."""
    return LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets)
    )


class LoraAdapters:
    """The adapters of a pipeline's UNet (and text encoder) prepared by `accelerator`, and
    with `conv_in` the UNet's trained input convolution."""

    def __init__(
        self, accelerator: Accelerator, pipe: StableDiffusionPipeline, conv_in: bool = False
    ) -> None:
        self.accelerator, self.conv_in = accelerator, conv_in
        self.unet_type, self.text_type = type(pipe.unet), type(pipe.text_encoder)

    def register_checkpoint_hooks(self) -> None:
        self.accelerator.register_save_state_pre_hook(self._save_hook)
        self.accelerator.register_load_state_pre_hook(self._load_hook)

    def parts(self, models: list) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """(UNet, text encoder or None) among the prepared `models`."""
        unwrapped = [self.accelerator.unwrap_model(m) for m in models]
        unet = next(m for m in unwrapped if isinstance(m, self.unet_type))
        text = [m for m in unwrapped if isinstance(m, self.text_type)]
        return unet, (text[0] if text else None)

    def layers(self, models: list) -> dict[str, dict | None]:
        """The adapter weights of `models`, as `save_lora_weights` takes them."""
        unet, text_encoder = self.parts(models)
        te_layers = None
        if text_encoder is not None:
            te_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(text_encoder))
        return {
            "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
            "text_encoder_lora_layers": te_layers,
        }

    def save(self, models: list, out_dir: str) -> None:
        StableDiffusionPipeline.save_lora_weights(
            out_dir, **self.layers(models), weight_name=LORA_WEIGHTS
        )
        if self.conv_in:
            save_conv_in(self.parts(models)[0], out_dir)

    def _save_hook(self, models: list, weights: list, output_dir: str) -> None:
        weights.clear()  # not the whole models: accelerate saves what is left in `weights`
        if self.accelerator.is_main_process:
            self.save(models, output_dir)

    def _load_hook(self, models: list, input_dir: str) -> None:
        unet, text_encoder = self.parts(models)
        models.clear()
        state, _ = StableDiffusionPipeline.lora_state_dict(input_dir, weight_name=LORA_WEIGHTS)
        unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
        set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), "default")
        if text_encoder is not None:
            _set_state_dict_into_text_encoder(state, "text_encoder.", text_encoder)
        if self.conv_in:  # in place: the optimiser holds these parameters
            unet.conv_in.load_state_dict(read_conv_in(input_dir))
        cast_training_params([m for m in (unet, text_encoder) if m is not None], torch.float32)
