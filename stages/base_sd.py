"""Base Stable Diffusion: a hub id or local directory as is, or `tiny` built offline.

Writes models/base_sd/source.json (what later stages load with `from_pretrained`) and,
for `tiny`, the saved pipeline: small UNet, text encoder with a tokenizer trained on the
train captions, SD v1.5's scheduler, and a VAE pretrained on the train images.
"""

from __future__ import annotations

import json
from pathlib import Path

from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.provenance import resolve_revision, write_source
from fashion.core.stage import PipelineError, run_stage
from fashion.data.subset import read_images, read_table, subset_path
from fashion.sd.models import TINY, VAE_LOSSES, build_tiny_sd, pretrain_vae

OUT_DIR = Path("models/base_sd")


def main() -> None:
    params = section(load_params(), "base_sd")
    with atomic_path(OUT_DIR, is_dir=True) as tmp:
        if params["pretrained"] != TINY:
            pretrained = str(params["pretrained"])
            revision = resolve_revision(pretrained, params.get("revision"), "base_sd.pretrained")
            write_source(tmp, pretrained, revision)
            return
        tiny, seed = params["tiny"], int(params["seed"])
        train_file = subset_path("data/subset", "train")
        vae = params["vae_pretraining"]
        if vae.get("loss", "mse") not in VAE_LOSSES:
            raise PipelineError(
                f"{PARAMS_FILE}: base_sd.vae_pretraining.loss must be one of {VAE_LOSSES}"
            )
        pipe = build_tiny_sd(read_table(train_file)["caption"], tiny, seed)
        losses = pretrain_vae(
            pipe.vae,
            read_images(train_file),
            int(tiny["resolution"]),
            int(vae["steps"]),
            int(vae["batch_size"]),
            float(vae["lr"]),
            float(vae["kl_weight"]),
            seed,
            vae.get("crop"),
            vae.get("loss", "mse"),
        )
        pipe.save_pretrained(tmp / "pipeline")
        write_source(tmp, str(OUT_DIR / "pipeline"))
        summary = {
            "vae_loss_first": losses[0],
            "vae_loss_last": losses[-1],
            "vae_scaling_factor": pipe.vae.config.scaling_factor,
        }
        (tmp / "vae_pretraining.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    run_stage(main)
