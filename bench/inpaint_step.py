"""What `finetune_inpaint.cache_latents` trades: the time to encode the caches (every image
and its garment-masked copy, both orientations) against the time it saves in each step.

On the demo's tiny SD (params.yaml's base_sd.tiny) grown to 9 channels, with drawn garments
and their masks: the inpainting step with and without caches, interleaved, one of each per
round (medians), and the cache build per image. Prints one JSON line; a cache of N images
pays for itself after N x `break_even_steps_per_image` steps.
Usage: python bench/inpaint_step.py [--rounds 15] [--batch 32] [--images 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from sd_step import drawn  # bench/ is on the path when a bench script runs

from fashion.inpaint.masks import DEFAULT_MASK_CLASSES, class_ids, garment_mask
from fashion.inpaint.training import InpaintData, InpaintFineTuner
from fashion.inpaint.unet import inpainting_unet
from fashion.sd.config import TrainConfig
from fashion.sd.models import build_tiny_sd, load_sd, noise_scheduler


def drawn_data(n: int, seed: int = 0) -> InpaintData:
    """`n` demo drawings, their captions and garment masks (the default classes, 2 px)."""
    images, captions, segmentation = drawn(n, seed)
    return InpaintData(
        images, captions, garment_mask(segmentation, class_ids(DEFAULT_MASK_CLASSES), 2)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    tiny = yaml.safe_load((root / "params.yaml").read_text())["base_sd"]["tiny"]
    data = drawn_data(args.images)
    accelerator = Accelerator()
    cfg = dict(resolution=int(tiny["resolution"]), batch_size=args.batch, train_text_encoder=False)
    tuners, build_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_sd(data.captions, tiny).save_pretrained(tmp)
        for name, cache in (("encoded", False), ("cached", True)):
            pipe = load_sd(tmp)
            pipe.unet = inpainting_unet(pipe.unet)
            start = time.perf_counter()
            tuners[name] = InpaintFineTuner(
                pipe, noise_scheduler(tmp), TrainConfig(**cfg, cache_latents=cache), data,
                accelerator,
            )  # fmt: skip
            build_s[name] = time.perf_counter() - start

    def timed(tuner: InpaintFineTuner, step: int) -> float:
        start = time.perf_counter()
        tuner.train_step(step)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in tuners}
    for step in range(args.rounds + 2):
        t = {name: timed(tuner, step) for name, tuner in tuners.items()}
        if step >= 2:  # warm-up rounds excluded
            for k, v in t.items():
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    cache_per_image = (build_s["cached"] - build_s["encoded"]) / args.images
    saved_per_step = med["encoded"] - med["cached"]
    print(
        json.dumps(
            {
                "bench": "inpaint_step",
                "batch": args.batch,
                "resolution": cfg["resolution"],
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "encoded_step_s": round(med["encoded"], 4),
                "cached_step_s": round(med["cached"], 4),
                "cache_s_per_image": round(cache_per_image, 5),
                # steps after which a cache of N images has paid for itself: N x this
                "break_even_steps_per_image": round(cache_per_image / saved_per_step, 4)
                if saved_per_step > 0
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
