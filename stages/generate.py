"""Generate images with the base and the fine-tuned Stable Diffusion, same prompts and seeds.

Two sets of prompts. The prompt grid (every gender x colour x sleeve x category of
`generate.prompts`) and free-form prompts: pictures and per-combination accuracy. The
matched set: the caption of each image in a fixed-seed sample of the evaluated split
(`reference.n_eval`, `reference.seed`, `split.evaluate`), one image each, so `evaluate`
compares the generated images with those same real images. Every image has its own seed.
Writes data/generated/{base,finetuned}/*.png with data/generated/manifest.csv (file, model,
prompt, seed, source, the matched image's subset row and the prompt's attribute codes) and
plots/generate/{base,finetuned}_grid.png (the grid prompts' images).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)
from PIL import Image
from tqdm import tqdm

from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.splits import evaluated_split
from fashion.sd.models import load_base_sd, load_finetuned_sd
from fashion.sd.prompts import Prompt, build_prompts, matched_prompts

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SCHEDULERS = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}


def generate(
    pipe: StableDiffusionPipeline, texts: list[str], seeds: list[int], params: dict
) -> list[Image.Image]:
    """One image per (text, seed), in batches; each image's noise comes from its own seed."""
    images: list[Image.Image] = []
    size, bs = int(params["resolution"]), int(params["batch_size"])
    for start in tqdm(range(0, len(texts), bs), desc="generate", mininterval=5):
        generators = [torch.Generator().manual_seed(s) for s in seeds[start : start + bs]]
        with torch.no_grad():
            images += pipe(
                texts[start : start + bs],
                height=size,
                width=size,
                num_inference_steps=int(params["steps"]),
                guidance_scale=float(params["guidance_scale"]),
                generator=generators,
            ).images
    return images


def grid(images: list[Image.Image], columns: int) -> Image.Image:
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    return sheet


def device_and_dtype(precision: str) -> tuple[str, torch.dtype]:
    """The GPU if there is one, with weights in `precision`; fp16 on the CPU runs in fp32
    (CPU half-precision kernels are slow or missing), bf16 is kept there."""
    if precision not in PRECISIONS:
        raise PipelineError(f"{PARAMS_FILE}: generate.precision must be one of {list(PRECISIONS)}")
    if torch.cuda.is_available():
        return "cuda", PRECISIONS[precision]
    return "cpu", torch.float32 if precision == "fp16" else PRECISIONS[precision]


def generation_jobs(params: dict, subset: Path) -> list[tuple[Prompt, int]]:
    """(prompt, seed) of every image: the grid and free-form prompts, `images_per_prompt`
    each, then the matched set; seeds count up from `generate.seed`, so the grid's images do
    not change with the matched set's size or split."""
    reference = section(params, "reference")
    split = evaluated_split(params, subset).sample(
        reference["n_eval"], int(reference["seed"]), "reference.n_eval"
    )
    spec = section(params, "generate")
    per_prompt = int(spec["images_per_prompt"])
    prompts = [(p, per_prompt) for p in build_prompts(spec["prompts"])]
    prompts += [(p, 1) for p in matched_prompts(split.table, split.rows)]
    jobs = [(p, k) for p, n in prompts for k in range(n)]
    return [(p, int(spec["seed"]) + i) for i, (p, _) in enumerate(jobs)]


def main(
    subset: Path = Path("data/subset"),
    base_sd: Path = Path("models/base_sd"),
    sd: Path = Path("models/sd"),
    out: Path = Path("data/generated"),
    plots: Path = Path("plots/generate"),
) -> None:
    all_params = load_params()
    params = section(all_params, "generate")
    if params.get("scheduler") not in SCHEDULERS:
        raise PipelineError(
            f"{PARAMS_FILE}: generate.scheduler must be one of {sorted(SCHEDULERS)}"
        )
    device, dtype = device_and_dtype(params["precision"])
    jobs = generation_jobs(all_params, subset)
    texts, seeds = [p.text for p, _ in jobs], [s for _, s in jobs]
    pictured = [k for k, (p, _) in enumerate(jobs) if p.source != "matched"] or list(
        range(len(jobs))
    )
    columns = int(params["grid_columns"])
    rows = []
    out_dir, plots_dir = out, plots
    with atomic_path(out_dir, is_dir=True) as out, atomic_path(plots_dir, is_dir=True) as plots:
        for model in ("base", "finetuned"):
            pipe = (
                load_base_sd(base_sd, torch_dtype=dtype)
                if model == "base"
                else load_finetuned_sd(sd, base_sd, torch_dtype=dtype)
            )
            pipe.scheduler = SCHEDULERS[params["scheduler"]].from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            pipe.to(device)
            images = generate(pipe, texts, seeds, params)
            (out / model).mkdir()
            for k, (image, (prompt, s)) in enumerate(zip(images, jobs, strict=True)):
                name = f"{model}/{k:05d}.png"
                image.save(out / name)
                rows.append(
                    {
                        "file": name,
                        "model": model,
                        "seed": s,
                        "prompt": prompt.text,
                        "source": prompt.source,
                        "row": prompt.row,
                        **{a: getattr(prompt, a) for a in ATTRIBUTES},
                    }
                )
            shown = [images[k] for k in pictured[: columns * columns]]
            grid(shown, columns).save(plots / f"{model}_grid.png")
        manifest = pd.DataFrame(rows)
        for column in ("row", *ATTRIBUTES):
            manifest[column] = manifest[column].astype("Int64")  # empty where a prompt has none
        manifest.to_csv(out / "manifest.csv", index=False)
    matched = sum(p.source == "matched" for p, _ in jobs)
    print(
        f"generated {len(jobs)} images per model: {matched} matched, {len(jobs) - matched} prompts"
    )


if __name__ == "__main__":
    run_stage(main)
