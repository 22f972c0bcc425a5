"""eda stage: data files for `dvc plots` and PNGs that show what the subset holds.

Reads `data/labels/labels.csv` and `data/subset/{train,test}.h5`; writes `plots/eda/`:
  <split>/{category,color,sleeve,gender}.csv   images per label (count, share)
  <split>/caption_length.csv                   captions per length in words
  top_words.csv, top_bigrams.csv               most frequent caption words and word pairs
  category_color.csv + category_color.png      category x colour counts, as a heat map
  segmentation_shares.csv + .png               pixel share of each segmentation class per split
  sample_grid.png                              random images with their captions
  segmentation_samples.png                     images over their segmentation maps
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import CATEGORY, COLOR, LABEL_MAPS, SEGMENTATION
from fashion.data.subset import SPLITS, open_subset, subset_path
from fashion.eda.figures import (
    caption_lengths,
    plot_grouped_bars,
    plot_heatmap,
    plot_sample_grid,
    plot_segmentation_samples,
    segmentation_shares,
    top_ngrams,
    value_counts,
)

LABEL_COLUMNS = ("index", "split", "caption", *LABEL_MAPS, "category_name", "color_name")


def read_labels(path: Path) -> pd.DataFrame:
    """The labels stage's table, with each row's position in its split's subset file."""
    if not path.is_file():
        raise PipelineError(f"{path}: label table not found (run the labels stage)")
    try:
        labels = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: not a readable CSV table ({err})") from err
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise PipelineError(f"{path}: missing columns {missing} (rerun the labels stage)")
    labels["row"] = labels.groupby("split").cumcount()
    return labels


def check_matches_subset(labels: pd.DataFrame, source: Path, subset: Path) -> None:
    """The table must list each split's images in the subset's order."""
    for split in SPLITS:
        path = subset_path(subset, split)
        with open_subset(path) as f:
            index = f["index"][()]
        if not np.array_equal(labels.loc[labels["split"] == split, "index"].to_numpy(), index):
            raise PipelineError(f"{source}: rows do not match {path} (rerun the labels stage)")


def read_rows(path: Path, dataset: str, rows: np.ndarray) -> np.ndarray:
    """Rows of one dataset of a subset file, in the given order."""
    unique, inverse = np.unique(rows, return_inverse=True)
    with h5py.File(path, "r") as f:
        return f[dataset][unique][inverse]


def write_samples(
    labels: pd.DataFrame, subset: Path, grid_size: int, seed: int, out: Path
) -> None:
    """The sample grid and the segmentation samples, from a seeded draw over both splits."""
    picked = labels.sample(n=min(grid_size**2, len(labels)), random_state=seed)
    parts = [picked[picked["split"] == split] for split in SPLITS]
    images, masks = [], []
    for split, part in zip(SPLITS, parts, strict=True):
        if len(part):
            path = subset_path(subset, split)
            images.append(read_rows(path, "images", part["row"].to_numpy()))
            masks.append(read_rows(path, "segmentation", part["row"].to_numpy()))
    picked = pd.concat(parts)
    images, masks = np.concatenate(images), np.concatenate(masks)
    titles = [f"{r.split} #{r.index}" for r in picked.itertuples()]
    plot_sample_grid(images, list(picked["caption"]), titles, out / "sample_grid.png")
    plot_segmentation_samples(
        images[:grid_size], masks[:grid_size], out / "segmentation_samples.png"
    )


def positive_int(params: dict, key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"params.yaml: eda.{key} must be a positive integer, got {value!r}")
    return value


def main(
    subset: Path = Path("data/subset"),
    labels_csv: Path = Path("data/labels/labels.csv"),
    out: Path = Path("plots/eda"),
) -> None:
    params = section(load_params(), "eda")
    sizes = {key: positive_int(params, key) for key in ("grid_size", "top_words", "top_bigrams")}
    labels = read_labels(labels_csv)
    check_matches_subset(labels, labels_csv, subset)
    if labels.empty:
        raise PipelineError(f"{labels_csv}: no images to explore")
    stop_words = params.get("stop_words", [])

    plots_dir = out
    with atomic_path(plots_dir, is_dir=True) as out:
        for split in SPLITS:
            rows = labels[labels["split"] == split]
            (out / split).mkdir()
            for attr, names in LABEL_MAPS.items():
                value_counts(rows, attr, names).to_csv(out / split / f"{attr}.csv", index=False)
            caption_lengths(rows["caption"]).to_csv(out / split / "caption_length.csv", index=False)
        for n, name in ((1, "top_words"), (2, "top_bigrams")):
            top = top_ngrams(labels["caption"], n, sizes[name], stop_words)
            top.to_csv(out / f"{name}.csv", index=False)

        heat = pd.crosstab(labels["category_name"], labels["color_name"])
        heat = heat.reindex(index=list(CATEGORY.values()), columns=list(COLOR.values()))
        heat = heat.fillna(0).astype("int64")
        heat.rename_axis(index="category", columns=None).to_csv(out / "category_color.csv")
        plot_heatmap(heat, out / "category_color.png", "images per category and colour")

        shares = pd.DataFrame(
            {split: segmentation_shares(subset_path(subset, split)) for split in SPLITS},
            index=pd.Index(list(SEGMENTATION.values()), name="class"),
        )
        shares.to_csv(out / "segmentation_shares.csv")
        plot_grouped_bars(
            shares, out / "segmentation_shares.png", "segmentation classes", "share of pixels"
        )
        write_samples(labels, subset, sizes["grid_size"], int(params.get("seed", 0)), out)
    print(f"wrote {sum(1 for p in plots_dir.rglob('*') if p.is_file())} files to {plots_dir}")


if __name__ == "__main__":
    run_stage(main)
