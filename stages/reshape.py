"""Train the shape model of redress v2 and score its maps.

Trains `fashion.shape.model.ShapeNet` on the train split less the validation split: each
image's coarse body map (`reshape.coarse_size`) and own caption in, its segmentation out
(`fashion.shape.training`; checkpoints and dvclive as the other training stages, validation
maps logged as images: coarse | true | predicted). Fits the map rules (`MapRule`: median
bare-arm share per sleeve, median garment end per category) on the training maps.

Then, on the evaluated split (`split.evaluate`): the maps of its images from their own
captions (IoU per class, mIoU), and of the redress pairs (the official test pairs, or seeded
validation pairs) from the source's coarse map and the target's sentence (how often the
rules read the target's sleeve and length). Writes models/shape/ (weights, config with the
vocabulary, rules.json), metrics/shape.json and plots/shape/grid.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from fashion.core.atomic import atomic_path
from fashion.core.grids import sentence_grid
from fashion.core.params import PARAMS_FILE, load_params, section, training_section
from fashion.core.provenance import training_fingerprint
from fashion.core.stage import PipelineError, run_stage
from fashion.data.pairs import redress_rows, validation_pairs
from fashion.data.splits import evaluated_split, train_validation_rows
from fashion.data.subset import read_images, read_segmentation, read_table, subset_path
from fashion.metrics.shape import iou_block, rule_blocks
from fashion.sd.precision import compute_dtype
from fashion.shape.maps import (
    MAP_FEATURES,
    RULES,
    MapRule,
    coarse_maps,
    colored_coarse,
    colored_maps,
)
from fashion.shape.model import (
    ShapeConfig,
    ShapeNet,
    encode_captions,
    predict_maps,
    save_shape_model,
    vocabulary,
)
from fashion.shape.training import ShapeData, ShapeRun, autocast, train_shape
from fashion.train.settings import fingerprint, schedule_steps, training_rows


def check_coarse_size(p: dict, side: int) -> None:
    """The coarse map's cells must tile the maps (`side` px, the data's; the params model
    checks every other value before the stage starts)."""
    if side % p["coarse_size"]:
        raise PipelineError(
            f"{PARAMS_FILE}: reshape.coarse_size: must divide the maps' {side} px, "
            f"got {p['coarse_size']!r}"
        )


def shape_run(p: dict, device: torch.device) -> ShapeRun:
    steps = int(p["steps"])
    return ShapeRun(
        steps=steps,
        schedule=schedule_steps("reshape", steps, p.get("schedule_steps")),
        batch_size=int(p["batch_size"]),
        lr=float(p["lr"]),
        warmup_steps=int(p["warmup_steps"]),
        weight_decay=float(p["weight_decay"]),
        random_flip=bool(p["random_flip"]),
        eval_every=int(p["eval_every"]),
        checkpoint_every=int(p["checkpoint_every"]),
        keep_checkpoints=int(p["keep_checkpoints"]),
        checkpoint_mirror=p.get("checkpoint_mirror"),
        seed=int(p["seed"]),
        dtype=compute_dtype(p["precision"], device, "reshape.precision"),
        coarse_jitter=float(p["coarse_jitter"]),
    )


def map_grid(*columns: np.ndarray) -> np.ndarray:
    """uint8 HWC: rows of maps side by side (each column a (N, H, W, 3) image set)."""
    return np.concatenate(
        [np.concatenate(row, axis=1) for row in zip(*columns, strict=True)], axis=0
    )


def main(
    subset: Path = Path("data/subset"),
    out: Path = Path("models/shape"),
    checkpoints: Path = Path("checkpoints/reshape"),
    live_dir: Path = Path("dvclive/reshape"),
    metrics_file: Path = Path("metrics/shape.json"),
    plots: Path = Path("plots/shape"),
) -> None:
    params = load_params()
    p = training_section(params, "reshape")
    accelerator = Accelerator()
    run = shape_run(p, accelerator.device)
    set_seed(run.seed)
    train_file = subset_path(subset, "train")
    table = read_table(train_file)
    rows, val_rows = train_validation_rows(table, section(params, "split"))
    rows = training_rows("reshape", rows, p["n_images"], run.seed)
    captions = table["caption"].iloc[rows].tolist()
    maps = read_segmentation(train_file, rows)
    check_coarse_size(p, maps.shape[-1])
    size, cells = int(p["coarse_size"]), p["coarse_cells"]
    cfg = ShapeConfig(
        vocab=tuple(vocabulary(captions, int(p["min_word_count"]))),
        coarse_size=size,
        coarse_cells=cells,
        work_size=int(p["work_size"]),
        width=int(p["width"]),
        text_dim=int(p["text_dim"]),
        out_size=maps.shape[-1],
    )
    step = cfg.out_size // int(p["loss_size"])  # the loss's maps: every step-th pixel
    data = ShapeData(
        torch.from_numpy(coarse_maps(maps, size, cells)),
        encode_captions(captions, cfg),
        torch.from_numpy(maps[:, ::step, ::step].astype(np.int64)),
    )
    shown = val_rows[: int(p["grid_rows"])]
    val_maps = read_segmentation(train_file, val_rows)
    val_coarse, val_captions = (
        coarse_maps(val_maps, size, cells),
        table["caption"].iloc[val_rows].tolist(),
    )

    def validate(model: ShapeNet) -> tuple[dict[str, float], np.ndarray]:
        predicted = predict_maps(model, val_coarse, val_captions)
        block = iou_block(predicted, val_maps, run.seed)
        k = len(shown)
        grid = map_grid(
            colored_coarse(val_coarse[:k], val_maps.shape[-1]),
            colored_maps(val_maps[:k]),
            colored_maps(predicted[:k]),
        )
        return {"val/miou": block["miou"]}, grid

    model = ShapeNet(cfg)
    source = training_fingerprint("shape", None, captions, maps)
    settings = fingerprint(
        {k: v for k, v in p.items() if k not in ("grid_rows", "rule_margin")},
        run.schedule,
        source,
        accelerator.num_processes,
        accelerator.mixed_precision,
    )
    model = train_shape(
        model, data, run, accelerator, settings, checkpoints, live_dir,
        validate if len(val_rows) else None,
    )  # fmt: skip
    if not accelerator.is_main_process:
        return

    codes = table.iloc[rows]
    rules = {
        a: MapRule.fit(a, maps, pd.to_numeric(codes[a], errors="coerce"), float(p["rule_margin"]))
        for a in MAP_FEATURES
    }
    with atomic_path(out, is_dir=True) as tmp:
        save_shape_model(model, tmp)
        (tmp / RULES).write_text(
            json.dumps({a: r.to_json() for a, r in rules.items()}, indent=1) + "\n"
        )

    split = evaluated_split(params, subset)
    split_maps = read_segmentation(split.path, split.rows)
    split_coarse = coarse_maps(split_maps, size, cells)
    with autocast(accelerator, run.dtype):  # a fresh one each time: accelerate's is single-use
        own = predict_maps(model, split_coarse, split.table["caption"].tolist())
    redress = section(params, "redress")
    source_rows, target_rows = (
        redress_rows(split.path)
        if split.name == "test"
        else validation_pairs(split.rows, int(redress["seed"]))
    )
    # pair rows are rows of the split's file; the split's arrays are in split.rows order
    position = {int(r): i for i, r in enumerate(split.rows)}
    s = np.array([position[int(r)] for r in source_rows], dtype=np.int64)
    t = np.array([position[int(r)] for r in target_rows], dtype=np.int64)
    with autocast(accelerator, run.dtype):
        redressed = predict_maps(model, split_coarse[s], split.table["caption"].iloc[t].tolist())
    numeric = split.table[list(MAP_FEATURES)].apply(pd.to_numeric, errors="coerce")
    metrics = {
        "split": split.name,
        "own_caption": iou_block(own, split_maps, run.seed),
        "changing_pairs": rule_blocks(
            rules,
            {"predicted": redressed, "target_map": split_maps[t], "source_map": split_maps[s]},
            {a: numeric[a].to_numpy()[s] for a in MAP_FEATURES},
            {a: numeric[a].to_numpy()[t] for a in MAP_FEATURES},
        ),
    }
    k = int(p["grid_rows"])
    side = split_maps.shape[-1]
    grid = sentence_grid(
        read_images(split.path, split.rows[s[:k]]),
        split.table["caption"].iloc[t[:k]].tolist(),
        {
            "coarse map": colored_coarse(split_coarse[s[:k]], side),
            "predicted map": colored_maps(redressed[:k]),
            "target's own map": colored_maps(split_maps[t[:k]]),
        },
    )
    with atomic_path(metrics_file) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_path(plots, is_dir=True) as tmp:
        grid.save(tmp / "grid.png")
    print(
        f"reshape: mIoU {metrics['own_caption']['miou']:.3f} on {len(own)} {split.name} maps; "
        + ", ".join(
            f"{a} {b['predicted_acc']:.3f} (target's map {b['target_map_acc']:.3f})"
            for a, b in metrics["changing_pairs"].items()
            if b["predicted_acc"] is not None
        )
    )


if __name__ == "__main__":
    run_stage(main)
