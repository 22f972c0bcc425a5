"""Base Stable Diffusion: a hub id or local directory as is, or `tiny` built offline.

Writes models/base_sd/source.json (what later stages load with `from_pretrained`) and,
for `tiny`, the saved pipeline: small UNet, text encoder with a tokenizer trained on the
train captions, SD v1.5's scheduler, and a VAE pretrained on the train images (the
validation split left out), whose loss curve goes to dvclive/base_sd (plots/metrics/vae/loss.tsv;
metrics.json: the last loss and the VAE's scaling factor). The tiny VAE's own colour fidelity,
`models/base_sd/vae_colors.json`: the pixel colour judge's accuracy on the validation images
at the model's resolution, as they are and after a VAE round trip (what generated images
can reach at best).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section, training_section
from fashion.core.provenance import resolve_revision, write_source
from fashion.core.stage import run_stage
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_images, read_table, subset_path
from fashion.metrics.garment_color import color_accuracy
from fashion.sd.models import (
    TINY,
    balanced_weights,
    build_tiny_sd,
    pretrain_vae,
    to_vae_pixels,
)
from fashion.sd.precision import compute_dtype
from fashion.train.live import log_step, open_live


def vae_colors(
    vae: AutoencoderKL, images: np.ndarray, colors: np.ndarray, resolution: int, batch: int = 64
) -> dict[str, float | int | None]:
    """Pixel-judge colour accuracy of images at `resolution`, as they are and reconstructed."""
    vae.eval()
    originals, reconstructed = [], []
    for start in range(0, len(images), batch):
        x = to_vae_pixels(images[start : start + batch], resolution)
        with torch.no_grad():
            y = vae(x).sample  # the posterior's mode, decoded
        for z, out in ((x, originals), (y, reconstructed)):
            out.append(((z.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return {
        "n": len(images),
        "color_acc_original": color_accuracy(np.concatenate(originals), colors),
        "color_acc_reconstructed": color_accuracy(np.concatenate(reconstructed), colors),
    }


def main(
    subset: Path = Path("data/subset"),
    out: Path = Path("models/base_sd"),
    live_dir: Path = Path("dvclive/base_sd"),
) -> None:
    all_params = load_params()
    params = training_section(all_params, "base_sd")
    live = open_live(live_dir, resume=False)
    # declared as DVC plots: present (empty) when no VAE is pretrained
    (live_dir / "plots/metrics").mkdir(parents=True, exist_ok=True)
    with atomic_path(out, is_dir=True) as tmp:
        if params["pretrained"] != TINY:
            pretrained = str(params["pretrained"])
            revision = resolve_revision(pretrained, params.get("revision"), "base_sd.pretrained")
            write_source(tmp, pretrained, revision)
            live.summary["vae_pretraining_steps"] = 0
            live.end()
            return
        tiny, seed = params["tiny"], int(params["seed"])
        train_file = subset_path(subset, "train")
        vae = params["vae_pretraining"]
        precision = vae["precision"]  # the params model checked every value
        table = read_table(train_file)
        rows, val_rows = train_validation_rows(table, section(all_params, "split"))
        pipe = build_tiny_sd(table["caption"].iloc[rows], tiny, seed)
        pretrain_vae(
            pipe.vae,
            read_images(train_file, rows),
            int(tiny["resolution"]),
            int(vae["steps"]),
            int(vae["batch_size"]),
            float(vae["lr"]),
            float(vae["kl_weight"]),
            seed,
            vae.get("crop"),
            vae.get("loss", "mse"),
            on_step=lambda step, loss: log_step(live, step, {"vae/loss": loss}),
            chroma_weight=float(vae.get("chroma_weight", 0.0)),
            sample_weights=balanced_weights(
                table["color"].to_numpy()[rows], float(vae.get("color_balance", 0.0))
            ),
            precision=compute_dtype(precision, "cpu", "base_sd.vae_pretraining.precision"),
        )
        colors = vae_colors(
            pipe.vae, read_images(train_file, val_rows), table["color"].to_numpy()[val_rows],
            int(tiny["resolution"]),
        )  # fmt: skip
        (tmp / "vae_colors.json").write_text(json.dumps(colors, indent=2) + "\n")
        print(f"VAE colour fidelity on {len(val_rows)} validation images: {colors}")
        pipe.save_pretrained(tmp / "pipeline")
        write_source(tmp, str(out / "pipeline"))
        live.summary["vae_pretraining_steps"] = int(vae["steps"])
        live.summary["vae_scaling_factor"] = pipe.vae.config.scaling_factor
        live.end()


if __name__ == "__main__":
    run_stage(main)
