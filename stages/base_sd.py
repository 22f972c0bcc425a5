"""Base Stable Diffusion: a hub id or local directory as is, or `tiny` built offline.

Writes models/base_sd/source.json (what later stages load with `from_pretrained`) and,
for `tiny`, the saved pipeline: small UNet, text encoder with a tokenizer trained on the
train captions, SD v1.5's scheduler, and a VAE pretrained on the train images, whose loss
curve goes to dvclive/base_sd (plots/metrics/vae/loss.tsv; metrics.json: the last loss and
the VAE's scaling factor).
"""

from __future__ import annotations

from pathlib import Path

from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.provenance import resolve_revision, write_source
from fashion.core.stage import PipelineError, run_stage
from fashion.data.subset import read_images, read_table, subset_path
from fashion.sd.models import TINY, VAE_LOSSES, build_tiny_sd, pretrain_vae
from fashion.train.live import log_step, open_live


def main(
    subset: Path = Path("data/subset"),
    out: Path = Path("models/base_sd"),
    live_dir: Path = Path("dvclive/base_sd"),
) -> None:
    params = section(load_params(), "base_sd")
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
        if vae.get("loss", "mse") not in VAE_LOSSES:
            raise PipelineError(
                f"{PARAMS_FILE}: base_sd.vae_pretraining.loss must be one of {VAE_LOSSES}"
            )
        pipe = build_tiny_sd(read_table(train_file)["caption"], tiny, seed)
        pretrain_vae(
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
            on_step=lambda step, loss: log_step(live, step, {"vae/loss": loss}),
        )
        pipe.save_pretrained(tmp / "pipeline")
        write_source(tmp, str(out / "pipeline"))
        live.summary["vae_pretraining_steps"] = int(vae["steps"])
        live.summary["vae_scaling_factor"] = pipe.vae.config.scaling_factor
        live.end()


if __name__ == "__main__":
    run_stage(main)
