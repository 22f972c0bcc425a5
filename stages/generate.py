"""Generate images with the base and the fine-tuned Stable Diffusion, same prompts and seeds.

Reads models/base_sd, models/sd and the test subset's captions; writes
data/generated/{base,finetuned}/*.png with data/generated/manifest.csv (file, model,
prompt, seed and the prompt's attribute codes) and plots/generate/{base,finetuned}_grid.png.
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
from fashion.data.subset import read_table, subset_path
from fashion.sd.models import load_base_sd, load_finetuned_sd
from fashion.sd.prompts import Prompt, build_prompts

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


def main(
    subset: Path = Path("data/subset"),
    base_sd: Path = Path("models/base_sd"),
    sd: Path = Path("models/sd"),
    out: Path = Path("data/generated"),
    plots: Path = Path("plots/generate"),
) -> None:
    params = section(load_params(), "generate")
    if params.get("scheduler") not in SCHEDULERS:
        raise PipelineError(
            f"{PARAMS_FILE}: generate.scheduler must be one of {sorted(SCHEDULERS)}"
        )
    device, dtype = device_and_dtype(params["precision"])
    prompts: list[Prompt] = build_prompts(
        params["prompts"], read_table(subset_path(subset, "test"))
    )
    per_prompt, seed = int(params["images_per_prompt"]), int(params["seed"])
    jobs = [
        (p, seed + i * per_prompt + j) for i, p in enumerate(prompts) for j in range(per_prompt)
    ]
    texts, seeds = [p.text for p, _ in jobs], [s for _, s in jobs]
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
                        **{a: getattr(prompt, a) for a in ATTRIBUTES},
                    }
                )
            grid(images[: columns * columns], columns).save(plots / f"{model}_grid.png")
        manifest = pd.DataFrame(rows)
        for a in ATTRIBUTES:
            manifest[a] = manifest[a].astype("Int64")  # codes, empty where the prompt names none
        manifest.to_csv(out / "manifest.csv", index=False)
    print(f"generated {len(images)} images per model from {len(prompts)} prompts")


if __name__ == "__main__":
    run_stage(main)
