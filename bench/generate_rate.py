"""Images per second of the `generate` stage's sampling with the demo's tiny SD (random
weights: the rate does not depend on them), at the params.yaml settings, the weights in
the dtype `generate.precision` gives on this machine (`--precision` to override). One JSON
line.

The measured rate sizes the matched set on the demo: seconds = 2 models x images / rate.
Usage: python bench/generate_rate.py [--images 128] [--rounds 3] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fashion.core.params import load_params, section
from fashion.data.captions import TEMPLATES, compose_caption
from fashion.sd.models import build_tiny_sd
from fashion.sd.sampling import device_and_dtype


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default=None, help="as generate.precision")
    args = parser.parse_args()
    params = load_params()
    tiny, gen = section(params, "base_sd")["tiny"], section(params, "generate")
    captions = [compose_caption(0, 1 + i % 17, 1 + i % 3, 1 + i % 19, TEMPLATES[0])
                for i in range(args.images)]  # fmt: skip
    device, dtype = device_and_dtype(args.precision or gen["precision"])
    pipe = build_tiny_sd(captions, tiny, seed=0).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    batch, size = int(gen["batch_size"]), int(gen["resolution"])
    rates = []
    for _ in range(args.rounds):
        began = time.perf_counter()
        for start in range(0, args.images, batch):
            with torch.no_grad():
                pipe(
                    captions[start : start + batch], height=size, width=size,
                    num_inference_steps=int(gen["denoising_steps"]),
                    guidance_scale=float(gen["guidance_scale"]),
                    generator=torch.Generator().manual_seed(start),
                )  # fmt: skip
        rates.append(args.images / (time.perf_counter() - began))
    print(json.dumps({
        "bench": "generate_rate", "images": args.images, "steps": int(gen["denoising_steps"]),
        "resolution": size, "batch_size": batch, "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "images_per_s_median": round(statistics.median(rates), 2),
        "images_per_s": [round(r, 2) for r in rates],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
