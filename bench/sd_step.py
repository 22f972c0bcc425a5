"""Per-step time of finetune_sd's training step vs the same step written as in diffusers'
`train_text_to_image.py`, on the same tiny SD (params.yaml's base_sd.tiny) and batches.

Three steps run interleaved, one of each per round: the stage's `FineTuner.train_step`
(pixels resized and encoded every step), the plain script's loop body (given batches
already preprocessed, as its DataLoader would), and the stage's step from cached latents
and text embeddings. Prints one JSON line with median seconds per step,
`ratio` = stage / plain and `cache_speedup` = stage / cached.
Usage: python bench/sd_step.py [--rounds 15] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator

from fashion.data.attributes import ATTRIBUTES
from fashion.data.captions import compose_caption
from fashion.demo.codes import sample_codes
from fashion.demo.drawing import draw_garments
from fashion.sd.config import TrainConfig
from fashion.sd.diffusion import padded_token_ids
from fashion.sd.models import build_tiny_sd, load_sd, noise_scheduler, to_vae_pixels
from fashion.sd.training import FineTuner, TrainData


def drawn(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """`n` demo drawings (uint8), with codes drawn as the real annotations', their captions
    and segmentation maps."""
    rng = np.random.default_rng(seed)
    sampled = sample_codes(n, rng)
    codes = np.stack([sampled[k].astype(np.int64) for k in ATTRIBUTES], axis=1)
    images, segmentation = draw_garments(*codes.T, rng=rng)
    captions = [compose_caption(*map(int, c)) for c in codes]
    return (images * 255).round().astype(np.uint8), captions, segmentation


def drawn_data(n: int, seed: int = 0) -> TrainData:
    """`n` demo drawings and their captions."""
    images, captions, _ = drawn(n, seed)
    return TrainData(images, captions)


def plain_step(
    unet,
    vae,
    text_encoder,
    noise_sched,
    optimizer,
    lr_scheduler,
    accelerator,
    batch,
    max_grad_norm: float = 1.0,
) -> float:
    """The loop body of diffusers' train_text_to_image.py (epsilon, no SNR, no offset)."""
    with accelerator.accumulate(unet):
        latents = vae.encode(batch["pixel_values"]).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, noise_sched.config.num_train_timesteps, (bsz,)).long()
        noisy_latents = noise_sched.add_noise(latents, noise, timesteps)
        encoder_hidden_states = text_encoder(batch["input_ids"], return_dict=False)[0]
        model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), noise.float(), reduction="mean")
        avg_loss = accelerator.gather(loss.repeat(bsz)).mean()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(unet.parameters(), max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
    return avg_loss.item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    tiny = params["base_sd"]["tiny"]
    data = drawn_data(args.batch * 8)
    accelerator = Accelerator()
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_sd(data.captions, tiny).save_pretrained(tmp)
        cfg = dict(
            resolution=int(tiny["resolution"]),
            batch_size=args.batch,
            random_flip=False,
            caption_dropout=0.0,
            train_text_encoder=False,
            lr=1e-4,
        )
        stage = FineTuner(
            load_sd(tmp),
            noise_scheduler(tmp),
            TrainConfig(**cfg, cache_latents=False),
            data,
            accelerator,
        )
        cached = FineTuner(
            load_sd(tmp),
            noise_scheduler(tmp),
            TrainConfig(**cfg, cache_latents=True),
            data,
            accelerator,
        )
        pipe = load_sd(tmp)
        sched = noise_scheduler(tmp)
    vae, text_encoder, unet = pipe.vae, pipe.text_encoder, pipe.unet
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

    def plain(step: int) -> float:
        rows = stage.batch_rows(step, 0)  # the same batch as the stage's step
        batch = {
            "pixel_values": to_vae_pixels(data.images[rows], cfg["resolution"]),
            "input_ids": padded_token_ids(pipe.tokenizer, [data.captions[r] for r in rows]),
        }
        start = time.perf_counter()  # preprocessing is the DataLoader's, not timed
        plain_step(unet, vae, text_encoder, sched, optimizer, lr_scheduler, accelerator, batch)
        return time.perf_counter() - start

    def timed(tuner: FineTuner, step: int) -> float:
        start = time.perf_counter()
        tuner.train_step(step)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"stage": [], "plain": [], "cached": []}
    for step in range(args.rounds + 2):
        t = {"stage": timed(stage, step), "plain": plain(step), "cached": timed(cached, step)}
        if step >= 2:  # warm-up rounds excluded
            for k, v in t.items():
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "bench": "sd_step",
                "batch": args.batch,
                "resolution": cfg["resolution"],
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "stage_s": round(med["stage"], 4),
                "plain_s": round(med["plain"], 4),
                "cached_s": round(med["cached"], 4),
                "ratio": round(med["stage"] / med["plain"], 3),
                "cache_speedup": round(med["stage"] / med["cached"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
