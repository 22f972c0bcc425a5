"""eda stage: data files for `dvc plots` and PNGs that show what the subset holds.

Reads `data/labels/labels.csv` and `data/subset/{train,test}.h5`; writes `plots/eda/`:
  <split>/{category,color,sleeve,gender}.csv   images per label (count, share)
  <split>/top_categories.csv                   the eda.top_categories most frequent categories
  <split>/gender_category.csv                  gender and category of each image (heat map data)
  <split>/color_top_categories.csv             colour and category of each image of those
  <split>/caption_words.csv                    the eda.word_cloud_words most frequent words
  <split>/caption_length.csv                   captions per length in words
  {gender,sleeve,color,top_categories}.png     the train split's tables above as figures:
  {gender_category,color_top_categories}.png   bars (colours in their own colour), heat maps
  word_cloud.png                               and a word cloud
  top_words.csv, top_bigrams.csv               most frequent caption words and word pairs
  category_color.csv + category_color.png      category x colour counts, as a heat map
  segmentation_shares.csv + .png               pixel share of each segmentation class per split
  sample_grid.png                              random images with their captions
  segmentation_samples.png                     images over their segmentation maps
  index.md                                     each figure with a reading of what it shows
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.attributes import CATEGORY, COLOR, GENDER, LABEL_MAPS, SEGMENTATION
from fashion.data.subset import SPLITS, open_subset, read_dataset_rows, subset_path
from fashion.eda.figures import (
    caption_lengths,
    plot_bars,
    plot_grouped_bars,
    plot_heatmap,
    plot_sample_grid,
    plot_segmentation_samples,
    plot_word_cloud,
    segmentation_shares,
    top_ngrams,
    value_counts,
)

LABEL_COLUMNS = ("index", "split", "caption", *LABEL_MAPS, "category_name", "color_name")
FIGURE_SPLIT = "train"  # the split whose tables are drawn as figures
SIZES = ("grid_size", "top_words", "top_bigrams", "top_categories", "word_cloud_words")


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
    with h5py.File(path, "r") as f:
        return read_dataset_rows(f[dataset], rows)


def write_samples(labels: pd.DataFrame, subset: Path, grid_size: int, seed: int, out: Path) -> None:
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
    plot_sample_grid(images, list(picked["caption"]), titles, out / "sample_grid.png",
                     "Random images with their captions (split and index above each)")  # fmt: skip
    splits = " and ".join(picked["split"][:grid_size].unique())
    plot_segmentation_samples(
        images[:grid_size], masks[:grid_size], out / "segmentation_samples.png",
        f"The sample grid's first images over their segmentation maps ({splits} images)",
    )  # fmt: skip


def split_tables(
    rows: pd.DataFrame, sizes: dict[str, int], stop_words: list[str]
) -> dict[str, pd.DataFrame]:
    """The tables of one split's rows, by file name (without .csv)."""
    tables = {attr: value_counts(rows, attr, names) for attr, names in LABEL_MAPS.items()}
    names = {attr: rows[attr].map(LABEL_MAPS[attr]) for attr in ("gender", "color", "category")}
    top = tables["category"].sort_values("count", ascending=False, kind="stable")
    tables["top_categories"] = top = top.head(sizes["top_categories"])
    tables["gender_category"] = pd.DataFrame({k: names[k] for k in ("gender", "category")})
    in_top = names["category"].isin(top["category"])
    tables["color_top_categories"] = pd.DataFrame(
        {k: names[k][in_top] for k in ("color", "category")}
    )
    tables["caption_words"] = top_ngrams(rows["caption"], 1, sizes["word_cloud_words"], stop_words)
    tables["caption_length"] = caption_lengths(rows["caption"])
    return tables


def shares(table: pd.DataFrame, label: str) -> str:
    """'white 20%, black 15%': the rows of a count table as label and share."""
    return ", ".join(f"{getattr(r, label)} {r.share:.0%}" for r in table.itertuples())


def top_cell(counts: pd.DataFrame) -> str:
    """'white tee, 1,234 of 9,876 images (12%)': the largest cell of a count table."""
    row, col = counts.stack().idxmax()
    n, total = counts.loc[row, col], max(counts.to_numpy().sum(), 1)
    return f"{row} {col}, {n:,} of {total:,} images ({n / total:.0%})"


def write_figures(
    tables: dict[str, pd.DataFrame], split: str, out: Path, seed: int
) -> dict[str, str]:
    """One split's tables drawn as figures in `out`; returns a reading of each figure."""
    note = f"{split} split, {int(tables['gender']['count'].sum()):,} images"
    by_count = {
        attr: tables[attr].sort_values("count", ascending=False, kind="stable")
        for attr in ("gender", "sleeve", "color", "category")
    }
    readings = {}
    for attr in ("gender", "sleeve", "color"):
        plot_bars(by_count[attr], attr, out / f"{attr}.png",
                  f"Images per {attr} ({note})", palette=attr == "color")  # fmt: skip
        readings[f"{attr}.png"] = f"images per {attr}: " + shares(by_count[attr].head(4), attr)
    top = tables["top_categories"]
    plot_bars(top, "category", out / "top_categories.png",
              f"The {len(top)} most frequent categories ({note})")  # fmt: skip
    readings["top_categories.png"] = (
        f"the {len(top)} most frequent categories hold {top['share'].sum():.0%} of the images: "
        + shares(top.head(3), "category")
    )

    pairs = tables["gender_category"]
    heat = pd.crosstab(pairs["gender"], pairs["category"])
    heat = heat.reindex(index=list(GENDER.values()), columns=by_count["category"]["category"])
    heat = heat.fillna(0).astype("int64")
    plot_heatmap(heat, out / "gender_category.png",
                 f"Images per gender and category ({note})", "category", "gender")  # fmt: skip
    commonest = [
        f"{g} {heat.loc[g].idxmax()} ({heat.loc[g].max() / heat.loc[g].sum():.0%})"
        for g in heat.index
        if heat.loc[g].sum()
    ]
    readings["gender_category.png"] = "commonest category per gender: " + ", ".join(commonest)

    pairs = tables["color_top_categories"]
    heat = pd.crosstab(pairs["color"], pairs["category"])
    heat = heat.reindex(index=by_count["color"]["color"], columns=top["category"])
    heat = heat.fillna(0).astype("int64")
    plot_heatmap(heat, out / "color_top_categories.png",
                 f"Images per colour in the {len(top)} most frequent categories\n({note})",
                 "category", "colour")  # fmt: skip
    readings["color_top_categories.png"] = "commonest pair: " + top_cell(heat)

    words = tables["caption_words"]
    plot_word_cloud(words, out / "word_cloud.png",
                    f"Caption words, stop words left out ({note})", seed)  # fmt: skip
    readings["word_cloud.png"] = "largest words: " + ", ".join(words["word"].head(6))
    return {name: f"{reading} ({split} split)" for name, reading in readings.items()}


def write_index(readings: dict[str, str], path: Path) -> None:
    """index.md: each figure as a link with its reading on this run."""
    lines = [
        "# EDA figures",
        "",
        "Written by the eda stage; each reading is computed on this run's data. A figure of one",
        "split draws that split's CSV tables (same name, in the split's folder), which",
        "`dvc plots show` draws too.",
        "",
        *(f"- [{name}]({name}): {reading}" for name, reading in readings.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


def main(
    subset: Path = Path("data/subset"),
    labels_csv: Path = Path("data/labels/labels.csv"),
    out: Path = Path("plots/eda"),
) -> None:
    params = section(load_params(), "eda")
    sizes = {key: int(params[key]) for key in SIZES}
    labels = read_labels(labels_csv)
    check_matches_subset(labels, labels_csv, subset)
    if not (labels["split"] == FIGURE_SPLIT).any():
        raise PipelineError(f"{labels_csv}: no {FIGURE_SPLIT} images to explore")
    stop_words = params.get("stop_words", [])
    seed = int(params.get("seed", 0))

    plots_dir = out
    with atomic_path(plots_dir, is_dir=True) as out:
        for split in SPLITS:
            tables = split_tables(labels[labels["split"] == split], sizes, stop_words)
            (out / split).mkdir()
            for name, table in tables.items():
                table.to_csv(out / split / f"{name}.csv", index=False)
            if split == FIGURE_SPLIT:
                readings = write_figures(tables, split, out, seed)
        for n, name in ((1, "top_words"), (2, "top_bigrams")):
            top = top_ngrams(labels["caption"], n, sizes[name], stop_words)
            top.to_csv(out / f"{name}.csv", index=False)

        heat = pd.crosstab(labels["category_name"], labels["color_name"])
        heat = heat.reindex(index=list(CATEGORY.values()), columns=list(COLOR.values()))
        heat = heat.fillna(0).astype("int64")
        heat.rename_axis(index="category", columns=None).to_csv(out / "category_color.csv")
        plot_heatmap(heat, out / "category_color.png",
                     "Images per category and colour (train and test splits)", "colour",
                     "category")  # fmt: skip
        readings["category_color.png"] = "commonest pair, both splits: " + top_cell(heat.T)

        shares = pd.DataFrame(
            {split: segmentation_shares(subset_path(subset, split)) for split in SPLITS},
            index=pd.Index(list(SEGMENTATION.values()), name="class"),
        )
        shares.to_csv(out / "segmentation_shares.csv")
        plot_grouped_bars(shares, out / "segmentation_shares.png",
                          "Pixels per segmentation class (train and test splits)",
                          "segmentation class", "share of pixels")  # fmt: skip
        readings["segmentation_shares.png"] = f"{FIGURE_SPLIT} pixels: " + ", ".join(
            f"{name} {share:.0%}" for name, share in shares[FIGURE_SPLIT].nlargest(3).items()
        )
        write_samples(labels, subset, sizes["grid_size"], seed, out)
        readings["sample_grid.png"] = "random images of both splits, each with its caption"
        readings["segmentation_samples.png"] = (
            "the sample grid's first images over their segmentation maps"
        )
        write_index(readings, out / "index.md")
    print(f"wrote {sum(1 for p in plots_dir.rglob('*') if p.is_file())} files to {plots_dir}")


if __name__ == "__main__":
    run_stage(main)
