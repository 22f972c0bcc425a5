"""Can the tiny SD's parts carry the garment colour? Two cheap checks on the demo data.

1. VAE: the garment colour (fashion.metrics.garment_color) of VAE reconstructions of solid-colour
   train drawings, vs the caption's colour and vs the colour read from the input itself.
   If the VAE alone loses the colour, no UNet can draw it.
2. Text encoder: leave-one-out nearest neighbour (cosine, mean of the last hidden states)
   among in-domain prompts: how often the nearest other prompt names the same colour.
   Prompts differ in gender, sleeve, category and sentence pattern too, so a high score
   means colour dominates the embedding.
Reads models/base_sd, models/sd when present (a full or a LoRA fine-tune) and
data/subset/train.h5.
Prints one JSON line.  Usage: python bench/sd_diagnose.py [--n 512]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fashion.data.attributes import CATEGORY, COLOR, SLEEVE
from fashion.data.subset import read_images, read_table
from fashion.metrics.garment_color import SOLID_CODES, garment_color
from fashion.sd.diffusion import padded_token_ids
from fashion.sd.models import LORA_WEIGHTS, load_base_sd, load_finetuned_sd, to_vae_pixels
from fashion.sd.prompts import in_domain_prompts


@torch.no_grad()
def vae_colour(pipe, images: np.ndarray, colours: np.ndarray) -> dict[str, float]:
    size = pipe.vae.config.sample_size
    x = to_vae_pixels(images, size)
    recon = torch.cat(
        [pipe.vae.decode(pipe.vae.encode(b).latent_dist.mode()).sample for b in x.split(64)]
    )
    as_hwc = lambda t: ((t.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()  # noqa: E731
    seen, rebuilt = garment_color(as_hwc(x)), garment_color(as_hwc(recon))
    return {
        "input_accuracy": round(float((seen == colours).mean()), 4),
        "recon_accuracy": round(float((rebuilt == colours).mean()), 4),
        "recon_agrees_with_input": round(float((rebuilt == seen).mean()), 4),
    }


@torch.no_grad()
def text_colour_nn(pipe) -> float:
    names = lambda m: [n for c, n in m.items() if n != "unspecified"]  # noqa: E731
    solid = [COLOR[c] for c in SOLID_CODES]
    prompts = in_domain_prompts(["female", "male"], solid, names(SLEEVE), names(CATEGORY))
    ids = padded_token_ids(pipe.tokenizer, [p.text for p in prompts])
    mask = (ids != pipe.tokenizer.pad_token_id).unsqueeze(-1).float()
    hidden = pipe.text_encoder(ids)[0]
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    colours = torch.tensor([p.color for p in prompts])
    return round(float((colours[sim.argmax(1)] == colours).float().mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    table = read_table("data/subset/train.h5")
    rows = np.flatnonzero(np.isin(table["color"].to_numpy(), SOLID_CODES))[: args.n]
    images, colours = read_images("data/subset/train.h5")[rows], table["color"].to_numpy()[rows]
    out = {"bench": "sd_diagnose", "n_images": len(rows), "chance": round(1 / len(SOLID_CODES), 4)}
    models = {"base": lambda: load_base_sd("models/base_sd")}
    tuned = Path("models/sd")
    if (tuned / "model_index.json").is_file() or (tuned / LORA_WEIGHTS).is_file():  # full | LoRA
        models["finetuned"] = lambda: load_finetuned_sd("models/sd", "models/base_sd")
    for name, load in models.items():
        pipe = load()
        if name == "base":
            out["vae"] = vae_colour(pipe, images, colours)
        out[f"{name}_text_colour_nn"] = text_colour_nn(pipe)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
