"""Generate images with the base and the fine-tuned Stable Diffusion, same prompts and seeds.

Two sets of prompts. The prompt grid (every gender x colour x sleeve x category of
`generate.prompts`), free-form prompts and those of `generate.prompts_file` (one a line):
pictures and per-combination accuracy. The matched set: the caption of each image in a
fixed-seed sample of the evaluated split (`reference.n_images`, `reference.seed`,
`split.evaluate`), one image each, so `evaluate` compares the generated images with those
same real images. Every image has its own seed; `generate.negative_prompt` applies to all.
Writes data/generated/{base,finetuned}/*.png with data/generated/manifest.csv (file, model,
prompt, seed, source, the matched image's subset row, the prompt's attribute codes, the
prompt file's line and the negative prompt) and plots/generate/{base,finetuned}_grid.png
(the grid prompts' images). A run stopped midway keeps its finished batches in
data/generated.partial/, and the next run samples only the rest. Under several processes
(`accelerate.launch`) each samples its share of the batches there; the main process then
writes the outputs from all of them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import run_stage
from fashion.data.attributes import ATTRIBUTES
from fashion.data.splits import matched_sample
from fashion.sd.models import load_base_sd, load_finetuned_sd
from fashion.sd.prompts import Prompt, build_prompts, file_prompts, matched_prompts
from fashion.sd.sampling import (
    FinishedBatches,
    check_scheduler,
    device_and_dtype,
    finished_batches,
    grid,
    ready_to_sample,
)

MODELS = ("base", "finetuned")


def generate(
    pipe: StableDiffusionPipeline,
    texts: list[str],
    seeds: list[int],
    params: dict,
    finished: FinishedBatches,
    model: str,
) -> None:
    """Sample this process's share of the batches of `model` no earlier run finished
    (`finished.todo`) into `finished`: one image per (text, seed); each image's noise comes
    from its own seed, and each has the negative prompt (`generate.negative_prompt`, ""
    for none)."""
    size, bs = int(params["resolution"]), int(params["batch_size"])
    negative = params["negative_prompt"]
    for start in tqdm(finished.todo(model, len(texts), bs), desc="generate", mininterval=5):
        batch = texts[start : start + bs]

        @torch.no_grad()
        def sample(batch: list[str] = batch, start: int = start) -> np.ndarray:
            generators = [torch.Generator().manual_seed(s) for s in seeds[start : start + bs]]
            drawn = pipe(
                batch,
                negative_prompt=[negative] * len(batch) if negative else None,
                height=size,
                width=size,
                num_inference_steps=int(params["denoising_steps"]),
                guidance_scale=float(params["guidance_scale"]),
                generator=generators,
            ).images
            return np.stack([np.asarray(image) for image in drawn])

        finished.batch(model, start, sample)


def warn_truncated(tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], path: str) -> None:
    """A warning for each prompt of the prompt file `path` longer than the text encoder
    takes (`model_max_length` tokens): the pipeline truncates it."""
    limit = tokenizer.model_max_length
    for p in prompts:
        n = len(tokenizer(p.text, verbose=False).input_ids)
        if n > limit:
            warnings.warn(
                f"{path}, line {p.line}: the prompt has {n} tokens, the text encoder takes "
                f"{limit}: truncated",
                stacklevel=2,
            )


def generation_jobs(params: dict, subset: Path) -> list[tuple[Prompt, int]]:
    """(prompt, seed) of every image: the grid, free-form and prompt file prompts,
    `images_per_prompt` each, then the matched set; seeds count up from `generate.seed`, so
    the grid's images do not change with the matched set's size or split."""
    split = matched_sample(params, subset)
    spec = section(params, "generate")
    per_prompt = int(spec["images_per_prompt"])
    listed = build_prompts(spec["prompts"])
    if spec.get("prompts_file"):
        listed += file_prompts(Path(spec["prompts_file"]))
    prompts = [(p, per_prompt) for p in listed]
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
    scheduler = check_scheduler(params.get("scheduler"), "generate.scheduler")
    device, dtype = device_and_dtype(params["precision"])
    negative = params["negative_prompt"]
    jobs = generation_jobs(all_params, subset)
    texts, seeds = [p.text for p, _ in jobs], [s for _, s in jobs]
    in_file = list(dict.fromkeys(p for p, _ in jobs if p.source == "prompt_file"))
    pictured = [k for k, (p, _) in enumerate(jobs) if p.source != "matched"] or list(
        range(len(jobs))
    )
    columns = int(params["grid_columns"])
    finished = finished_batches(
        out, params, device, dtype, (base_sd, sd), jobs=[(p.text, s) for p, s in jobs]
    )
    processes = finished.processes
    for model in MODELS:
        pipe = ready_to_sample(
            load_base_sd(base_sd, torch_dtype=dtype)
            if model == "base"
            else load_finetuned_sd(sd, base_sd, torch_dtype=dtype),
            scheduler,
        )
        if model == "base" and in_file and processes.is_main:  # the base's tokenizer is kept
            warn_truncated(pipe.tokenizer, in_file, params["prompts_file"])
        pipe.to(device)
        generate(pipe, texts, seeds, params, finished, model)
    finished.wait()  # every process's batches are in
    print(processes.summary("generate"))
    if not processes.is_main:
        return
    rows = []
    out_dir, plots_dir = out, plots
    with atomic_path(out_dir, is_dir=True) as out, atomic_path(plots_dir, is_dir=True) as plots:
        for model in MODELS:
            batches = finished.read(model, len(jobs), int(params["batch_size"]))
            images = [Image.fromarray(a) for a in batches]
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
                        "prompt_line": prompt.line,
                        "negative_prompt": negative,
                    }
                )
            shown = [images[k] for k in pictured[: columns * columns]]
            grid(shown, columns).save(plots / f"{model}_grid.png")
        manifest = pd.DataFrame(rows)
        for column in ("row", *ATTRIBUTES, "prompt_line"):
            manifest[column] = manifest[column].astype("Int64")  # empty where a prompt has none
        manifest.to_csv(out / "manifest.csv", index=False)
    finished.clear()
    if finished.reused:
        print(f"generate: {finished.reused} batches read back from the stopped run before")
    matched = sum(p.source == "matched" for p, _ in jobs)
    print(
        f"generated {len(jobs)} images per model: {matched} matched, {len(jobs) - matched} prompts"
    )


if __name__ == "__main__":
    run_stage(main)
