"""Base CLIP models: a tiny one built offline from a small config, or any `from_pretrained` source.

The tiny model is saved with `save_pretrained` next to the base stage's `source.json`,
so every later stage loads tiny and real models through the same `from_pretrained` code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from fashion.clip.data import pixel_values, text_inputs
from fashion.core.params import PARAMS_FILE
from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.data.tokenizer import train_caption_tokenizer

TINY = "tiny"
TINY_ACTIVATION = "quick_gelu"  # OpenAI CLIP's


def build_tiny_clip(
    captions: Iterable[str], tiny: dict[str, Any], seed: int = 0
) -> tuple[CLIPModel, CLIPProcessor]:
    """A small, randomly initialised CLIP and its processor, from the `base_clip.tiny` params.

    The text config's bos/eos/pad ids are the trained tokenizer's: CLIP pools the text at
    the first EOS token, so a wrong id would silently pool another token. `activation` is
    any transformers activation name; without one, OpenAI CLIP's quick_gelu, so a config
    written before the param existed builds the model it built then.
    """
    activation = tiny.get("activation", TINY_ACTIVATION)
    if not isinstance(activation, str) or activation not in ACT2FN:
        raise PipelineError(
            f"{PARAMS_FILE}: base_clip.tiny.activation must be a transformers activation "
            f"such as gelu or quick_gelu, got {activation!r}"
        )
    tokenizer = train_caption_tokenizer(captions, int(tiny["vocab_size"]))
    image_size = int(tiny["image_size"])

    def tower(name: str) -> dict[str, int]:
        width = int(tiny[f"{name}_width"])
        return {
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_hidden_layers": int(tiny[f"{name}_layers"]),
            "num_attention_heads": int(tiny[f"{name}_heads"]),
            "hidden_act": activation,
        }

    config = CLIPConfig(
        text_config={
            **tower("text"),
            "vocab_size": len(tokenizer),
            "max_position_embeddings": int(tiny["max_length"]),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **tower("vision"),
            "image_size": image_size,
            "patch_size": int(tiny["patch_size"]),
        },
        projection_dim=int(tiny["projection_dim"]),
    )
    tokenizer.model_max_length = int(tiny["max_length"])
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def load_clip(
    pretrained: str | Path, revision: str | None = None
) -> tuple[CLIPModel, CLIPProcessor]:
    """Model and processor from a hub id or a directory (`revision` pins a hub commit)."""
    try:
        model = CLIPModel.from_pretrained(str(pretrained), revision=revision)
        processor = CLIPProcessor.from_pretrained(str(pretrained), revision=revision)
    except OSError as err:
        raise PipelineError(f"{pretrained}: cannot load a CLIP model ({err})") from err
    return model, processor


def load_base_clip(model_dir: str | Path) -> tuple[CLIPModel, CLIPProcessor]:
    """The base CLIP recorded by the `base_clip` stage in `model_dir/source.json`."""
    return load_clip(*read_source(model_dir))


def lock_towers(model: CLIPModel, lock_image: int | bool, lock_text: int | bool) -> None:
    """Lock a tower: `False` trains it, `True` freezes it with its projection, an int N > 0
    freezes all but its last N encoder layers (the final norm and projection stay trainable).
    """
    towers = (
        (model.vision_model, model.visual_projection, lock_image),
        (model.text_model, model.text_projection, lock_text),
    )
    for tower, projection, lock in towers:
        if lock is False or lock is None:
            continue
        tower.requires_grad_(False)
        if lock is True:
            projection.requires_grad_(False)
            continue
        n = int(lock)
        if n <= 0:
            raise PipelineError(f"lock value {lock!r}: use true, false or a positive layer count")
        for layer in tower.encoder.layers[-n:]:
            layer.requires_grad_(True)
        # the final norm feeds the pooled output: keep it trainable with the unlocked layers
        final_norm = getattr(tower, "post_layernorm", None) or tower.final_layer_norm
        final_norm.requires_grad_(True)


def feature_tensor(features: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The projected (n, d) features of `get_image_features` / `get_text_features`.

    transformers 4.x returns them as a tensor; transformers 5 returns an output object
    holding them in `pooler_output`.
    """
    return features if isinstance(features, torch.Tensor) else features.pooler_output


@torch.no_grad()
def embed_images(
    model: CLIPModel,
    processor: CLIPProcessor,
    images: np.ndarray,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """L2-normalised image embeddings (n, d) on the CPU, of uint8 HWC images."""
    out = []
    for i in range(0, len(images), batch_size):
        pixels = pixel_values(processor, images[i : i + batch_size], device)
        features = feature_tensor(model.get_image_features(pixel_values=pixels))
        out.append(F.normalize(features, dim=-1))
    return torch.cat(out).float().cpu()


@torch.no_grad()
def embed_texts(
    model: CLIPModel,
    processor: CLIPProcessor,
    texts: list[str],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """L2-normalised text embeddings (n, d) on the CPU."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = {
            k: v.to(device) for k, v in text_inputs(processor, texts[i : i + batch_size]).items()
        }
        features = feature_tensor(model.get_text_features(**tokens))
        out.append(F.normalize(features, dim=-1))
    return torch.cat(out).float().cpu()
