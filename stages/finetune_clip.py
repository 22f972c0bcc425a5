"""Fine-tune the base CLIP on the train split less the validation split, under accelerate.

The validation split (`split` params: whole product folders carved from train) gives the
validation R@1 curve; nothing of it is trained on. `n_images` and `epochs` set the training
images and length (`fashion.train.settings`). `saved_weights: last` saves the final weights;
`saved_weights: best_val_r1` the weights of the validation evaluation with the best R@1 (kept in
`<checkpoints>/best/` whenever one beats the best so far, and mirrored with the checkpoints;
dvclive's `val.best_step` says which). A resumed run keeps the best of the steps up to its
checkpoint; a resume at the last step only writes the output.

Run as `accelerate launch stages/finetune_clip.py` (the `accelerate.launch` param) on one CPU,
one GPU or many. Every process contrasts its pairs against the whole global batch (features
gathered across processes), so more processes mean more negatives. Checkpoints every
`checkpoint_every` steps and at the end; a re-run resumes from the latest one of the same
fingerprint (base model, data, process count and the params that change the weights; see
`fashion.train.settings` for the `steps` / `schedule_steps` rule).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from fashion.clip.data import BatchMaker, presize, read_pairs
from fashion.clip.models import load_clip, lock_towers
from fashion.clip.training import caption_r1, make_optimizer, make_scheduler, train_step
from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE, load_params, section, training_section
from fashion.core.provenance import read_source, training_fingerprint
from fashion.core.stage import PipelineError, run_stage
from fashion.data.splits import train_validation_rows
from fashion.data.subset import read_table, subset_path
from fashion.train.batches import StepBatches, StepDataset, worker_start_method
from fashion.train.checkpoints import BestModel, Checkpoints
from fashion.train.live import log_step, open_live
from fashion.train.settings import (
    fingerprint,
    fit_batch_size,
    schedule_steps,
    training_rows,
    training_steps,
)

KEEP = ("last", "best_val_r1")


def main(
    subset: Path = Path("data/subset"),
    base_clip: Path = Path("models/base_clip"),
    out: Path = Path("models/clip"),
    checkpoints: Path = Path("checkpoints/finetune_clip"),
    live_dir: Path = Path("dvclive/finetune_clip"),
) -> None:
    params = load_params()
    p = training_section(params, "finetune_clip")
    accum, seed, epochs = int(p["grad_accum"]), int(p["seed"]), p.get("epochs")
    train_file = subset_path(subset, "train")
    pairs = read_pairs(train_file)
    train_rows, val_rows = train_validation_rows(read_table(train_file), section(params, "split"))
    train_rows = training_rows("finetune_clip", train_rows, p.get("n_images", "all"), seed)
    pretrained, revision = read_source(base_clip)
    accelerator = Accelerator(gradient_accumulation_steps=accum)
    set_seed(seed)
    model, processor = load_clip(pretrained, revision)
    lock_towers(model, p["lock_image"], p["lock_text"])

    train, val = pairs.take(train_rows), pairs.take(val_rows)
    del pairs  # the whole split's images: 3.4 GB on the real benchmark
    keep = p.get("saved_weights", "last")
    if keep not in KEEP or (keep == "best_val_r1" and not len(val)):
        raise PipelineError(
            f"{PARAMS_FILE}: finetune_clip.saved_weights must be one of {list(KEEP)}"
            + ("; best_val_r1 needs a validation split (split.validation_images > 0)"
               if keep == "best_val_r1" else f", got {keep!r}")
        )  # fmt: skip
    source = training_fingerprint(pretrained, revision, train.captions, train.images)
    train.images = presize(processor, train.images)  # resized once, not in every step
    world = accelerator.num_processes
    batch_size = fit_batch_size("finetune_clip", int(p["batch_size"]), len(train), world, accum)
    batches = StepBatches(
        len(train), batch_size, world, accelerator.process_index, seed, accum,
        keep_remainder=epochs is not None,
    )  # fmt: skip
    steps = training_steps("finetune_clip", p.get("steps"), epochs, batches.steps_per_epoch)
    schedule = schedule_steps("finetune_clip", steps, p.get("schedule_steps"))

    optimizer = make_optimizer(model, p, accelerator.device, accelerator.mixed_precision)
    scheduler = make_scheduler(optimizer, p, schedule)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    checkpoints = Checkpoints(
        checkpoints,
        fingerprint(p, schedule, source, world, accelerator.mixed_precision),
        int(p["keep_checkpoints"]),
        p.get("checkpoint_mirror"),
    )
    start = checkpoints.resume(accelerator, steps)
    best = BestModel(checkpoints.root) if keep == "best_val_r1" else None
    if best and accelerator.is_main_process and best.resumed_at(start) is None and start:
        # best/ lost (e.g. a mirror written before it held best/) or of a later step: the
        # resumed weights are the first candidate, so a resume at the last step ends too
        accelerator.print(
            f"finetune_clip: no best weights of the steps up to {start} beside the "
            "checkpoint: the resumed weights are validated as the first candidate"
        )
        model_ = accelerator.unwrap_model(model)
        r1 = caption_r1(model_, processor, val, accelerator.device)
        best.offer(start, r1, model_.save_pretrained)
    accelerator.print(
        f"finetune_clip: {world} process(es), {len(train)} train and "
        f"{len(val)} validation images, steps {start + 1}..{steps}"
        + (f" (resumed from the step {start} checkpoint)" if start else "")
    )

    workers = int(p["num_workers"])
    loader = DataLoader(
        StepDataset(batches, BatchMaker(processor, train)),
        batch_size=None,
        sampler=range(start * accum, steps * accum),
        num_workers=workers,
        multiprocessing_context=worker_start_method(workers),
    )
    live = open_live(live_dir, resume=start > 0, main_process=accelerator.is_main_process)
    step, running, count = start, torch.zeros((), device=accelerator.device), 0
    global_batch = batches.global_batch * accum
    window_began, window_steps = time.perf_counter(), 0  # training throughput since the last log
    bar = tqdm(total=steps, initial=start, desc="finetune_clip", disable=live is None)
    for batch in loader:
        running += train_step(accelerator, model, optimizer, scheduler, batch, p["max_grad_norm"])
        count += 1
        if not accelerator.sync_gradients:
            continue
        step += 1
        window_steps += 1
        bar.update()
        metrics = {}
        if step % int(p["log_every"]) == 0 or step == steps:
            metrics["train/loss"] = accelerator.reduce(running / count, "mean").item()  # syncs
            seconds = time.perf_counter() - window_began
            metrics["perf/images_per_s"] = window_steps * global_batch / seconds
            metrics["train/lr"] = scheduler.get_last_lr()[0]
            running.zero_()
            count = 0
        if live and len(val) and (step % int(p["eval_every"]) == 0 or step == steps):
            model_ = accelerator.unwrap_model(model)
            metrics["val/caption_r1"] = caption_r1(model_, processor, val, accelerator.device)
            if best and best.offer(step, metrics["val/caption_r1"], model_.save_pretrained):
                metrics["val/best_step"] = step
        log_step(live, step, metrics)
        if live and metrics:
            bar.set_postfix({k.split("/")[1]: f"{v:.3g}" for k, v in metrics.items()})
        # the last step too: a later run with more `steps` goes on from there
        checkpointed = step % int(p["checkpoint_every"]) == 0 or step == steps
        if checkpointed:
            checkpoints.save(accelerator, step)
        if metrics or checkpointed:  # logging, validation and checkpoints are not training time
            window_began, window_steps = time.perf_counter(), 0
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_path(out, is_dir=True) as tmp:
            if best:  # the best validation step's weights
                shutil.copytree(best.dir, tmp, dirs_exist_ok=True)
                (tmp / "best.json").unlink()
                record = best.record()
                live.summary.setdefault("val", {}).update(
                    best_step=record["step"], best_caption_r1=record["score"]
                )
            else:
                accelerator.unwrap_model(model).save_pretrained(tmp)
            processor.save_pretrained(tmp)
        live.end()
    accelerator.end_training()


if __name__ == "__main__":
    run_stage(main)
