"""What each unit of work of a real run costs next to one SD v1.5 UNet training image, on the CPU.

The cost model (`bench/cost_model.py`) anchors GPU time on SD v1.5 rates: the UNet
training rate measured on an H100 and published sampling rates. The other stages' work
(CLIP ViT-B/32 training and embedding, Inception-v3 features, the VAE's encodes) has no
GPU figure; this script times each unit on the CPU with the published architectures
(random weights, fp32, interleaved rounds, medians) and divides by the time of one
full-UNet training image at 512 px. That one is timed at 256 px and counted 4x, the
pixel-count rule the cost model scales resolutions by (at 512 px the UNet's backward needs
over 20 GB on a CPU). A CPU ratio counts arithmetic, not a GPU's efficiency on small
models, so the estimates built on it are labelled scaled.

    python bench/cost_ratios.py [--rounds 3]

Prints one JSON line: seconds per image of each unit and its ratio to the UNet training
image at 512 px. The cost model keeps the ratios it uses in `CPU_RATIOS`, with the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torchvision.models import inception_v3
from transformers import CLIPConfig, CLIPModel

from fashion.sd.architecture import SD15_CROSS_ATTENTION_DIM, sd15_unet_config

UNET_SIDE = 32  # latents of a 256 px image
UNET_TO_512 = (64 / UNET_SIDE) ** 2  # the pixel-count rule
TEXT_TOKENS = 77  # SD's text encoder pads to 77
CAPTION_TOKENS = 20  # CLIP training pads to the batch's longest caption (~15 words)
BATCH = 2  # images a call of the units other than the UNet's


def sd_vae() -> AutoencoderKL:
    """SD v1.5's VAE architecture (scripts/standin_models.py's vae_config)."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
    )


def units() -> dict[str, tuple[Callable[[], object], int]]:
    """Each unit of work as (a call, the images it handles)."""
    torch.manual_seed(0)
    unet, vae = UNet2DConditionModel(**sd15_unet_config()), sd_vae().eval()
    clip = CLIPModel(CLIPConfig())  # transformers' default CLIP config is ViT-B/32's
    # torchvision's Inception-v3: the IS/FID network's architecture, built without a download
    inception = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    latents = torch.randn(1, 4, UNET_SIDE, UNET_SIDE)
    text = torch.randn(1, TEXT_TOKENS, SD15_CROSS_ATTENTION_DIM)
    t = torch.tensor([500])
    pixels = torch.randn(BATCH, 3, 512, 512)
    clip_pixels = torch.randn(BATCH, 3, 224, 224)
    ids = torch.randint(0, clip.config.text_config.vocab_size, (BATCH, CAPTION_TOKENS))
    inception_in = torch.randn(BATCH, 3, 299, 299)

    def unet_train() -> None:
        unet.zero_grad(set_to_none=True)
        unet(latents, t, encoder_hidden_states=text).sample.square().mean().backward()

    def clip_train() -> None:
        clip.zero_grad(set_to_none=True)
        clip(input_ids=ids, pixel_values=clip_pixels, return_loss=True).loss.backward()

    @torch.no_grad()
    def vae_encode() -> None:
        vae.encode(pixels)

    @torch.no_grad()
    def clip_embed() -> None:
        clip.get_image_features(pixel_values=clip_pixels)

    @torch.no_grad()
    def inception_features() -> None:
        inception(inception_in)

    return {
        "unet_train_image_256": (unet_train, 1),
        "vae_encode_512": (vae_encode, BATCH),
        "clip_train_image": (clip_train, BATCH),
        "clip_embed_image": (clip_embed, BATCH),
        "inception_image": (inception_features, BATCH),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = units()
    times: dict[str, list[float]] = {name: [] for name in work}
    for run, _ in work.values():  # warm-up: the allocator and oneDNN's kernels
        run()
    for _ in range(args.rounds):  # interleaved: the machine's moment hits every unit alike
        for name, (run, images) in work.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / images)
    per_image = {name: statistics.median(ts) for name, ts in times.items()}
    unet_512 = per_image["unet_train_image_256"] * UNET_TO_512
    ratios = {k: round(v / unet_512, 5) for k, v in per_image.items() if not k.startswith("unet")}
    print(
        json.dumps(
            {
                "date": datetime.date.today().isoformat(),
                "threads": torch.get_num_threads(),
                "rounds": args.rounds,
                "seconds_per_image": {k: round(v, 4) for k, v in per_image.items()},
                "unet_train_image_512_s": round(unet_512, 3),
                "ratio_to_unet_train_image_512": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
