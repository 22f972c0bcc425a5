"""Stand-in model folders for offline runs of the real profile: published architectures,
random weights. Nothing generated or measured with them is a result to report.

    python scripts/standin_models.py OUT_DIR [--reduced] [--captions SUBSET_H5]

writes
    OUT_DIR/clip-vit-base-patch32/   CLIPModel + CLIPProcessor (openai/clip-vit-base-patch32)
    OUT_DIR/stable-diffusion-v1-5/   StableDiffusionPipeline (stable-diffusion-v1-5), no
                                     safety checker, fp32 safetensors as the hub's main branch
    OUT_DIR/stable-diffusion-inpainting/  StableDiffusionInpaintPipeline: the same parts, the
                                     UNet with 9 input channels (stable-diffusion-inpainting)
    OUT_DIR/inception-standin.pth    torch-fidelity Inception-v3 state dict (random)

The real BPE vocabulary is a download, so the tokenizer is CLIP's byte-level BPE trained
on garment captions (every attribute combination in the benchmark's sentence patterns, or
the captions of a subset file), padded to the published 49,408 tokens with merges learnt
from seeded pseudo-words. The text configs take the tokenizer's bos/eos/pad ids: CLIP pools
at the first EOS token, and a wrong id would pool another token silently.

`--reduced` keeps every architecture (block types, UNet/VAE blocks per level, attention
layout, image and patch size, 77 text positions, the scheduler) and cuts the widths by 8
(group norms from 32 to 8 groups), the transformer towers from 12 to 2 layers and the
vocabulary to what the captions need (no pseudo-word padding): a CPU builds it in seconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from diffusers import (
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch import nn
from torchmetrics.image.fid import NoTrainInceptionV3
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

from fashion.core.atomic import atomic_path
from fashion.core.stage import PipelineError
from fashion.data.attributes import CATEGORY, COLOR, GENDER_NOUN, SLEEVE
from fashion.data.captions import TEMPLATES, compose_caption
from fashion.data.subset import read_table
from fashion.data.tokenizer import train_caption_tokenizer
from fashion.sd.architecture import sd15_unet_config
from fashion.sd.models import SD15_SCHEDULER

CLIP_DIR = "clip-vit-base-patch32"
SD_DIR = "stable-diffusion-v1-5"
INPAINT_DIR = "stable-diffusion-inpainting"
INCEPTION_FILE = "inception-standin.pth"
VOCAB_SIZE = 49408  # CLIP's BPE vocabulary (both CLIP and SD v1.5's text encoder)
MAX_LENGTH = 77
WIDTH_DIVISOR = 8  # --reduced: widths / 8
REDUCED_LAYERS = 2  # --reduced: transformer layers per tower (12 in the published models)
REDUCED_GROUPS = 8  # --reduced: group-norm groups (32 do not divide the reduced widths)

# Published parameter counts (checked by tests/test_standin_models.py).
PUBLISHED_PARAMETERS = {
    "clip": 151_277_313,
    "unet": 859_520_964,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
}


@dataclass(frozen=True)
class TokenIds:
    """The special token ids a CLIP text config must share with its tokenizer."""

    bos: int
    eos: int
    pad: int

    @classmethod
    def of(cls, tokenizer: CLIPTokenizer) -> TokenIds:
        return cls(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)

    def config(self) -> dict[str, int]:
        return {"bos_token_id": self.bos, "eos_token_id": self.eos, "pad_token_id": self.pad}


# --- configs --------------------------------------------------------------------------------


def _width(n: int, reduced: bool) -> int:
    return n // WIDTH_DIVISOR if reduced else n


def _layers(reduced: bool) -> int:
    return REDUCED_LAYERS if reduced else 12


def clip_config(ids: TokenIds, vocab_size: int, reduced: bool = False) -> CLIPConfig:
    """openai/clip-vit-base-patch32: ViT-B/32 224 px, text 512 wide, projection 512."""
    text = {"hidden_size": 512, "heads": 8}
    vision = {"hidden_size": 768, "heads": 12}

    def tower(spec: dict[str, int]) -> dict[str, int]:
        width = _width(spec["hidden_size"], reduced)
        return {
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_hidden_layers": _layers(reduced),
            "num_attention_heads": spec["heads"],
        }

    return CLIPConfig(
        text_config={
            **tower(text),
            "vocab_size": vocab_size,
            "max_position_embeddings": MAX_LENGTH,
            "hidden_act": "quick_gelu",
            **ids.config(),
        },
        vision_config={**tower(vision), "image_size": 224, "patch_size": 32},
        projection_dim=_width(512, reduced),
    )


def text_encoder_config(ids: TokenIds, vocab_size: int, reduced: bool = False) -> CLIPTextConfig:
    """SD v1.5's text encoder: the text tower of CLIP ViT-L/14 (768 wide, 12 heads)."""
    width = _width(768, reduced)
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=4 * width,
        projection_dim=width,
        num_hidden_layers=_layers(reduced),
        num_attention_heads=12,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        **ids.config(),
    )


def unet_config(reduced: bool = False) -> dict[str, Any]:
    """stable-diffusion-v1-5 unet/config.json (architecture fields; fashion.sd.architecture)."""
    if reduced:
        return sd15_unet_config(WIDTH_DIVISOR, REDUCED_GROUPS)
    return sd15_unet_config()


def vae_config(reduced: bool = False) -> dict[str, Any]:
    """stable-diffusion-v1-5 vae/config.json (architecture fields and scaling factor)."""
    return {
        "sample_size": 512,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": tuple(_width(c, reduced) for c in (128, 256, 512, 512)),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": REDUCED_GROUPS if reduced else 32,
        "act_fn": "silu",
        "scaling_factor": 0.18215,
    }


# --- tokenizer --------------------------------------------------------------------------------


def garment_captions() -> list[str]:
    """Every (gender, colour, sleeve, category) in each of the benchmark's sentence patterns."""
    return [
        compose_caption(gender, color, sleeve, category, template)
        for template in TEMPLATES
        for gender in GENDER_NOUN
        for color in COLOR
        for sleeve in SLEEVE
        for category in CATEGORY
    ]


def pseudo_words(n: int, seed: int = 0) -> list[str]:
    """Seeded lines of random lower-case words: BPE merges to fill the published vocabulary."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return [
        " ".join("".join(rng.choice(letters, rng.integers(3, 12))) for _ in range(20))
        for _ in range(n)
    ]


def standin_tokenizer(captions: list[str], reduced: bool) -> CLIPTokenizer:
    """CLIP's BPE trained on the captions; full size: padded to the published vocabulary."""
    if reduced:
        # more than the captions can use: the vocabulary stops where the merges run out
        tokenizer = train_caption_tokenizer(captions, VOCAB_SIZE)
    else:
        # captions repeated so their words merge before the pseudo-words' letter pairs
        corpus = captions * 20 + pseudo_words(10_000)
        tokenizer = train_caption_tokenizer(corpus, VOCAB_SIZE)
        if len(tokenizer) != VOCAB_SIZE:
            raise PipelineError(f"tokenizer: {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    tokenizer.model_max_length = MAX_LENGTH
    return tokenizer


def read_captions(path: Path | None) -> list[str]:
    """The captions of a subset file (`data/subset/train.h5`), else `garment_captions()`."""
    if path is None:
        return garment_captions()
    if not path.is_file():
        raise PipelineError(f"{path}: captions file not found (a subset .h5 file)")
    return [str(c) for c in read_table(path)["caption"]]


# --- models -----------------------------------------------------------------------------------


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_clip(tokenizer: CLIPTokenizer, reduced: bool) -> tuple[CLIPModel, CLIPProcessor]:
    """CLIP ViT-B/32 with random weights and the published preprocessing (224 px, CLIP mean/std)."""
    model = CLIPModel(clip_config(TokenIds.of(tokenizer), len(tokenizer), reduced))
    image_processor = CLIPImageProcessor(  # the published defaults, spelled out
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_sd(tokenizer: CLIPTokenizer, reduced: bool) -> StableDiffusionPipeline:
    """SD v1.5's UNet, VAE, text encoder and PNDM scheduler with random weights."""
    ids = TokenIds.of(tokenizer)
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**vae_config(reduced)),
        text_encoder=CLIPTextModel(text_encoder_config(ids, len(tokenizer), reduced)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_config(reduced)),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd_inpainting(tokenizer: CLIPTokenizer, reduced: bool) -> StableDiffusionInpaintPipeline:
    """SD v1.5 inpainting: SD v1.5's parts, the UNet reading 9 channels (latents, mask,
    masked-image latents), random weights."""
    parts = build_sd(tokenizer, reduced).components
    parts["unet"] = UNet2DConditionModel(**{**unet_config(reduced), "in_channels": 9})
    return StableDiffusionInpaintPipeline(**parts, requires_safety_checker=False)


def build_inception() -> nn.Module:
    """torch-fidelity's Inception-v3, randomly initialised (its weights are not downloaded)."""
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        return tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])


# --- writing ----------------------------------------------------------------------------------


def write_clip(out_dir: Path, tokenizer: CLIPTokenizer, reduced: bool) -> int:
    model, processor = build_clip(tokenizer, reduced)
    with atomic_path(out_dir / CLIP_DIR, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return n_parameters(model)


def write_sd(out_dir: Path, tokenizer: CLIPTokenizer, reduced: bool) -> dict[str, int]:
    pipe = build_sd(tokenizer, reduced)
    with atomic_path(out_dir / SD_DIR, is_dir=True) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    parts = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    return {name: n_parameters(part) for name, part in parts.items()}


def write_sd_inpainting(out_dir: Path, tokenizer: CLIPTokenizer, reduced: bool) -> int:
    pipe = build_sd_inpainting(tokenizer, reduced)
    with atomic_path(out_dir / INPAINT_DIR, is_dir=True) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    return n_parameters(pipe.unet)


def load_standin_inception(path: Path) -> NoTrainInceptionV3:
    """The weights file loaded as the evaluate stage loads one (torchmetrics' torch-fidelity
    Inception-v3 with `feature_extractor_weights_path`)."""
    return NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["2048"],
        feature_extractor_weights_path=str(path),
    )


def write_inception(out_dir: Path) -> int:
    """Saves the state dict, then loads it back before it takes its name."""
    net = build_inception()
    with atomic_path(out_dir / INCEPTION_FILE) as tmp:
        torch.save(net.state_dict(), tmp)
        load_standin_inception(tmp)
    return n_parameters(net)


def write_standins(
    out_dir: Path,
    reduced: bool = False,
    captions: Iterable[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, int]:
    """Write the three stand-ins into `out_dir`; returns the parameter count of each model.

    `device` is where the weights are initialised (a GPU draws SD's 1.1B in a second).
    """
    tokenizer = standin_tokenizer(list(captions or garment_captions()), reduced)
    torch.manual_seed(seed)
    with torch.device(device):
        counts = {"clip": write_clip(out_dir, tokenizer, reduced)}
        counts.update(write_sd(out_dir, tokenizer, reduced))
        counts["inpainting_unet"] = write_sd_inpainting(out_dir, tokenizer, reduced)
    counts["inception"] = write_inception(out_dir)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--reduced", action="store_true", help="widths / 8, 2-layer towers")
    parser.add_argument("--captions", type=Path, help="subset .h5 whose captions train the BPE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to initialise the weights (default: cuda if available)",
    )
    args = parser.parse_args(argv)
    try:
        captions = read_captions(args.captions)
        counts = write_standins(args.out_dir, args.reduced, captions, args.seed, args.device)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = "reduced" if args.reduced else "full-size"
    for name, n in counts.items():
        published = PUBLISHED_PARAMETERS.get(name)
        note = f" (published {published:,})" if published and not args.reduced else ""
        print(f"{size} stand-in {name}: {n:,} parameters{note}")
    print(f"random weights in {args.out_dir}: never report numbers computed with them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
