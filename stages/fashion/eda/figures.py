"""Exploratory data analysis of the subset: tables for `dvc plots` and matplotlib figures.

Tables are small DataFrames written as CSV (DVC renders them with the templates declared in
`dvc.yaml`); figures are PNGs drawn with the Agg backend (no display needed).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: stages run headless
import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from wordcloud import WordCloud  # noqa: E402

from fashion.data.attributes import SEGMENTATION, SEGMENTATION_COLORS  # noqa: E402
from fashion.data.captions import caption_tokens  # noqa: E402
from fashion.data.palette import PALETTE  # noqa: E402

_SEGMENTATION_CHUNK = 1024  # images per read: 16 MB of 128x128 uint8 masks
# A colour bar without a palette colour (multicolor) is drawn as stripes of these.
STRIPE_COLORS = ("red", "blue", "yellow", "green")
BAR_COLOR = "#4c72b0"


def value_counts(labels: pd.DataFrame, attr: str, names: dict[int, str]) -> pd.DataFrame:
    """Rows of `labels` per code of `attr`, every code of the map listed (zeros included)."""
    counts = labels[attr].value_counts().reindex(list(names), fill_value=0)
    total = max(int(counts.sum()), 1)
    return pd.DataFrame(
        {attr: [names[c] for c in counts.index], "count": counts.values,
         "share": counts.values / total}
    )  # fmt: skip


def caption_lengths(captions: Iterable[str]) -> pd.DataFrame:
    """Number of captions per length in words, every length from the shortest to the longest."""
    lengths = pd.Series([len(caption_tokens(c)) for c in captions], dtype="int64")
    if lengths.empty:
        return pd.DataFrame({"words": [], "count": [], "share": []})
    counts = lengths.value_counts().reindex(range(lengths.min(), lengths.max() + 1), fill_value=0)
    return pd.DataFrame(
        {"words": counts.index, "count": counts.values, "share": counts.values / len(lengths)}
    )


def top_ngrams(
    captions: Iterable[str], n: int, top: int, stop_words: Iterable[str] = ()
) -> pd.DataFrame:
    """The `top` most frequent word n-grams, stop words dropped before pairing."""
    stop = set(stop_words)
    counts: Counter[str] = Counter()
    for caption in captions:
        words = [w for w in caption_tokens(caption) if w not in stop]
        counts.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    column = "word" if n == 1 else "bigram" if n == 2 else f"{n}-gram"
    return pd.DataFrame(counts.most_common(top), columns=[column, "count"])


def segmentation_shares(path: Path) -> np.ndarray:
    """Share of pixels per segmentation class over a subset file, read in chunks."""
    counts = np.zeros(len(SEGMENTATION), dtype=np.int64)
    with h5py.File(path, "r") as f:
        masks = f["segmentation"]
        for start in range(0, len(masks), _SEGMENTATION_CHUNK):
            chunk = masks[start : start + _SEGMENTATION_CHUNK]
            counts += np.bincount(chunk.ravel(), minlength=len(SEGMENTATION))[: len(SEGMENTATION)]
    return counts / max(int(counts.sum()), 1)


def plot_sample_grid(
    images: np.ndarray, captions: Sequence[str], titles: Sequence[str], path: Path, title: str
) -> None:
    """Images (n, H, W, 3) uint8 in a square grid, each with its caption underneath.

    A person checks it: garments upright, natural colours (the mean restored, axes in order).
    """
    side = int(np.ceil(np.sqrt(len(images))))
    fig, axes = plt.subplots(side, side, figsize=(2.2 * side, 2.9 * side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption, label in zip(axes.flat, images, captions, titles, strict=True):
        ax.imshow(image)
        ax.set_title(label, fontsize=7)
        ax.text(0.5, -0.02, textwrap.fill(caption, 30), transform=ax.transAxes, fontsize=6.5,
                ha="center", va="top")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_segmentation_samples(
    images: np.ndarray, masks: np.ndarray, path: Path, title: str
) -> None:
    """Each image above its segmentation map: the garment and the mask must line up."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 4.2), squeeze=False)
    cmap = ListedColormap(SEGMENTATION_COLORS)
    for i in range(n):
        axes[0, i].imshow(images[i])
        axes[1, i].imshow(images[i])
        axes[1, i].imshow(masks[i], cmap=cmap, vmin=0, vmax=len(SEGMENTATION) - 1, alpha=0.6,
                          interpolation="nearest")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SEGMENTATION_COLORS]
    fig.legend(handles, list(SEGMENTATION.values()), loc="lower center", ncol=len(SEGMENTATION),
               fontsize=7, frameon=False)  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_heatmap(counts: pd.DataFrame, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    """A count table (rows x columns) as a heat map on a log scale, each cell annotated."""
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * counts.shape[1], 1.8 + 0.4 * counts.shape[0]))
    values = counts.to_numpy()
    masked = np.ma.masked_equal(values, 0)
    norm = LogNorm(vmin=1, vmax=max(values.max(), 2))
    image = ax.imshow(masked, cmap="viridis", norm=norm, aspect="auto")
    ax.set_xticks(range(counts.shape[1]), counts.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(counts.shape[0]), counts.index, fontsize=8)
    for (row, col), value in np.ndenumerate(values):
        if value:  # dark text on the bright (high) end of viridis
            color = "black" if image.norm(value) > 0.6 else "white"
            ax.text(col, row, str(value), ha="center", va="center", fontsize=5.5, color=color)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax, label="images (log scale)", shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grouped_bars(
    shares: pd.DataFrame, path: Path, title: str, xlabel: str, ylabel: str
) -> None:
    """Columns of `shares` (one per group, e.g. split) as side-by-side bars per row label."""
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(shares), 3.6))
    width = 0.8 / shares.shape[1]
    x = np.arange(len(shares))
    for i, column in enumerate(shares.columns):
        ax.bar(x + (i - (shares.shape[1] - 1) / 2) * width, shares[column], width, label=column)
    ax.set_xticks(x, shares.index, rotation=30, ha="right")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(title="split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(
    table: pd.DataFrame, label: str, path: Path, title: str, palette: bool = False
) -> Figure:
    """Rows of a count table (`label`, count, share) as horizontal bars, first row on top.

    With `palette`, each bar is drawn in the demo palette's colour of its label, a label the
    palette lacks (multicolor) as stripes of several colours. Returns the (closed) figure.
    """
    fig, ax = plt.subplots(figsize=(6.4, 1.6 + 0.32 * len(table)))
    y = np.arange(len(table))
    for i, row in enumerate(table.itertuples(index=False)):
        name, count = getattr(row, label), row.count
        colors = [PALETTE[name]] if palette and name in PALETTE else [BAR_COLOR]
        if palette and name not in PALETTE:
            colors = [PALETTE[c] for c in STRIPE_COLORS]
        height = 0.8 / len(colors)
        for k, color in enumerate(colors):  # stripes along the bar, top to bottom
            bar = ax.barh(i - 0.4 + (k + 0.5) * height, count, height, color=color)
            bar.patches[0].set_gid(name)
        ax.barh(i, count, 0.8, fill=False, edgecolor="0.3", linewidth=0.6)
        ax.text(count, i, f" {count:,} ({row.share:.1%})", va="center", fontsize=8)
    ax.set_yticks(y, table[label])
    ax.invert_yaxis()
    ax.set_xlim(0, max(int(table["count"].max()), 1) * 1.2)
    ax.set(title=title, xlabel="images", ylabel=label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def plot_word_cloud(words: pd.DataFrame, path: Path, title: str, seed: int) -> WordCloud:
    """Words (word, count) as a word cloud, font size growing with the count."""
    frequencies = dict(zip(words["word"], words["count"], strict=True))
    cloud = WordCloud(width=1000, height=500, background_color="white", colormap="Dark2",
                      max_words=len(frequencies), random_state=seed)  # fmt: skip
    cloud.generate_from_frequencies(frequencies)
    fig, ax = plt.subplots(figsize=(10, 5.6))
    ax.imshow(cloud.to_array(), interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set(title=title, xlabel="font size grows with how often the captions use the word")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return cloud
