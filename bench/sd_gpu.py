"""GPU throughput of SD v1.5 UNet fine-tuning at 512 px: full UNet vs LoRA, bf16, batch 8.

The UNet is the SD v1.5 architecture, randomly initialised from its published config
(no download); latents (64x64) and text embeddings (77x768) are random, so this
measures the UNet's forward + backward + optimiser step, the bulk of a real step.
Prints one JSON line: images/s (median over timed steps) and peak GPU memory per mode.
Usage: python bench/sd_gpu.py [--steps 12] [--batch 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

from fashion.sd.architecture import sd15_unet_config

UNET = sd15_unet_config()


def run_mode(mode: str, steps: int, batch: int, rank: int, checkpointing: bool) -> dict:
    torch.manual_seed(0)
    device = torch.device("cuda")
    unet = UNet2DConditionModel(**UNET)
    n_params = sum(p.numel() for p in unet.parameters())
    if mode == "lora":
        from peft import LoraConfig

        # as diffusers' train_text_to_image_lora.py: frozen UNet in bf16, LoRA weights in fp32
        unet.requires_grad_(False)
        unet.to(device, dtype=torch.bfloat16)
        unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=["to_k", "to_q", "to_v", "to_out.0"],
            )
        )
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    else:  # full: fp32 master weights, bf16 autocast (accelerate --mixed_precision bf16)
        unet.to(device)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    trainable = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5 if mode == "full" else 1e-4, fused=True)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps + 3):
        size = UNET["sample_size"]
        latents = torch.randn(batch, UNET["in_channels"], size, size, device=device)
        text = torch.randn(batch, 77, UNET["cross_attention_dim"], device=device)
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = sched.add_noise(latents, noise, t)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = unet(noisy, t, text).sample
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    result = {
        "step_s": round(step_s, 4),
        "images_per_s": round(batch / step_s, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "trainable_params": sum(p.numel() for p in trainable),
        "unet_params": n_params,
    }
    del unet, opt
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: bench/sd_gpu.py measures on a CUDA GPU; none is visible")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out = {
        "bench": "sd_gpu",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "resolution": 512,
        "batch": args.batch,
        "precision": "bf16 autocast",
        "lora_rank": args.rank,
    }
    for mode, ckpt in (("full", False), ("full", True), ("lora", False), ("lora", True)):
        key = f"{mode}{'_grad_ckpt' if ckpt else ''}"
        try:
            out[key] = run_mode(mode, args.steps, args.batch, args.rank, ckpt)
        except Exception as err:  # report, keep measuring the other modes
            out[key] = {"error": f"{type(err).__name__}: {err}"[:300]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
