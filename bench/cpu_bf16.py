"""fp32 vs bf16 on this CPU for what the SD stages run: the tiny VAE's encode and decode
(64 images at 64 px), its pretraining step (base_sd.vae_pretraining: batch 32 on 32 px
crops, bf16 autocast), the tiny UNet's sampling forward (a CFG batch of 128 latents) and
its training step (batch 32, the text encoder too), all built from params.yaml's
`base_sd.tiny` with random weights. bf16 runs the VAE and the sampling UNet with bf16
weights, as `precision: auto` does on a CPU with bf16 instructions, and the training steps
under bf16 autocast. Interleaved rounds (which goes first alternates), medians in ms,
`speedup` = fp32 / bf16. Prints one JSON line, with whether the CPU has bf16 instructions
(`cpu_has_bf16`).

    python bench/cpu_bf16.py [--rounds 6] [--repeats 3]

Run with ONEDNN_MAX_CPU_ISA=AVX2 to see a CPU without them, where bf16 is emulated (the
stages then run fp32: `cpu_has_bf16` reads the cap).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from fashion.sd.models import build_tiny_sd
from fashion.sd.precision import cpu_has_bf16

BF16 = torch.bfloat16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tiny = yaml.safe_load(Path("params.yaml").read_text())["base_sd"]["tiny"]
    captions = ["the lady is wearing a red long-sleeved dress.", "the man wore a blue tee."]
    pipe = build_tiny_sd(captions * 50, tiny, seed=0)
    torch.manual_seed(0)
    size = int(tiny["resolution"])
    factor = 2 ** (len(tiny["vae_channels"]) - 1)
    pixels = torch.rand(64, 3, size, size) * 2 - 1
    latents = torch.randn(64, 4, size // factor, size // factor)
    vae32 = pipe.vae.eval()
    vae16 = copy.deepcopy(vae32).to(BF16)
    unet32 = pipe.unet.eval()
    unet16 = copy.deepcopy(unet32).to(BF16)
    ids = pipe.tokenizer(captions * 16, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, return_dict=False)[0]
    cfg_latents, steps = torch.cat([latents, latents]), torch.full((128,), 500)
    cfg_hidden = torch.cat([hidden, hidden, hidden, hidden])

    def sample(unet: torch.nn.Module, dtype: torch.dtype) -> None:
        with torch.no_grad():
            unet(cfg_latents.to(dtype), steps, cfg_hidden.to(dtype))

    def autocast(enabled: bool) -> torch.autocast:
        return torch.autocast("cpu", BF16, enabled=enabled)

    vae_train = copy.deepcopy(vae32).train().to(memory_format=torch.channels_last)
    vae_opt = torch.optim.AdamW(vae_train.parameters(), lr=1e-4)
    crops = pixels[:32, :, :32, :32].contiguous(memory_format=torch.channels_last)

    def vae_step(half: bool) -> None:
        with autocast(half):
            recon = vae_train(crops).sample.float()
        vae_opt.zero_grad(set_to_none=True)
        F.l1_loss(recon, crops).backward()
        vae_opt.step()

    unet_train = copy.deepcopy(unet32).train()
    text_train = copy.deepcopy(pipe.text_encoder).train()
    params = list(unet_train.parameters()) + list(text_train.parameters())
    unet_opt = torch.optim.AdamW(params, lr=1e-4)

    def unet_step(half: bool) -> None:
        with autocast(half):
            text = text_train(ids[:32], return_dict=False)[0]
            out = unet_train(latents[:32], steps[:32], text).sample.float()
        unet_opt.zero_grad(set_to_none=True)
        F.mse_loss(out, latents[:32]).backward()
        unet_opt.step()

    no_grad = torch.no_grad()
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "vae_encode": {
            "fp32": no_grad(lambda: vae32.encode(pixels)),
            "bf16": no_grad(lambda: vae16.encode(pixels.to(BF16))),
        },
        "vae_decode": {
            "fp32": no_grad(lambda: vae32.decode(latents)),
            "bf16": no_grad(lambda: vae16.decode(latents.to(BF16))),
        },
    }
    cases["unet_sample"] = {
        "fp32": lambda: sample(unet32, torch.float32),
        "bf16": lambda: sample(unet16, BF16),
    }
    cases["vae_train_step"] = {"fp32": lambda: vae_step(False), "bf16": lambda: vae_step(True)}
    cases["unet_train_step"] = {"fp32": lambda: unet_step(False), "bf16": lambda: unet_step(True)}

    times: dict[str, dict[str, list[float]]] = {c: {"fp32": [], "bf16": []} for c in cases}
    for round_ in range(args.rounds):
        for case, runs in cases.items():
            order = ["fp32", "bf16"] if round_ % 2 == 0 else ["bf16", "fp32"]
            for kind in order:
                runs[kind]()  # warm-up: oneDNN picks and caches its kernels
                began = time.perf_counter()
                for _ in range(args.repeats):
                    runs[kind]()
                times[case][kind].append((time.perf_counter() - began) / args.repeats)
    result: dict[str, object] = {
        "bench": "cpu_bf16",
        "cpu_has_bf16": cpu_has_bf16(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "threads": torch.get_num_threads(),
    }
    for case, kinds in times.items():
        fp32, bf16 = (statistics.median(kinds[k]) for k in ("fp32", "bf16"))
        result[case] = {
            "fp32_ms": round(fp32 * 1e3, 1),
            "bf16_ms": round(bf16 * 1e3, 1),
            "speedup": round(fp32 / bf16, 2),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
