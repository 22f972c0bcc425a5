"""Codes, names and split of a demo benchmark, with the statistics of the real annotations
(`assets/`, derived by `scripts/derive_demo_assets.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fashion.data.attributes import ATTRIBUTES, CATEGORY, LABEL_MAPS

# --------------------------------------------------------------------------- benchmark rows
# Codes, names and split of a demo benchmark, with the statistics of the real annotations
# (`assets/`, derived by `scripts/derive_demo_assets.py`).

ASSETS = Path(__file__).resolve().parent / "assets"
CODE_DISTRIBUTIONS = ("real", "uniform")
# The real split: 70,000 train and 8,979 test images in runs of ~9.0 and ~1.16 images.
TEST_SHARE = 8979 / 78979
_TRAIN_RUN, _TEST_RUN = 70000 / 7760, 8979 / 7760


def sample_codes(
    n: int, rng: np.random.Generator, attributes: str = "real"
) -> dict[str, np.ndarray]:
    """(gender, color, sleeve, category) codes of `n` images, as uint8 arrays.

    "real" samples from the joint counts of the real annotations; "uniform" each code uniformly.
    """
    if attributes == "uniform":
        return {k: rng.choice(list(LABEL_MAPS[k]), n).astype(np.uint8) for k in ATTRIBUTES}
    if attributes != "real":
        raise ValueError(f"attributes must be one of {CODE_DISTRIBUTIONS}, got '{attributes}'")
    joint = np.loadtxt(ASSETS / "joint_counts.csv", delimiter=",", skiprows=1, dtype=np.int64)
    rows = rng.choice(len(joint), n, p=joint[:, 4] / joint[:, 4].sum())
    return {k: joint[rows, i].astype(np.uint8) for i, k in enumerate(ATTRIBUTES)}


def _histogram(counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([int(k) for k in counts])
    p = np.array(list(counts.values()), dtype=np.float64)
    return values, p / p.sum()


def folder_order(category: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Group images into item folders as `nameList` does; returns (row order, names in that order).

    Names follow `img/<Descriptor_Words_Category>/img_XXXXXXXX.jpg`: one folder per item, the
    category as the folder name's last word, increasing image numbers with gaps, folder sizes
    and descriptor words with the real frequencies.
    """
    stats = json.loads((ASSETS / "folder_names.json").read_text())
    sizes, size_p = _histogram(stats["images_per_folder"])
    lengths, length_p = _histogram(stats["descriptor_words_per_folder"])
    steps, step_p = _histogram(stats["number_steps"])
    words = list(stats["descriptor_words"])
    word_p = np.array(list(stats["descriptor_words"].values()), np.float64)
    word_p /= word_p.sum()

    folders: list[tuple[str, np.ndarray]] = []
    used: set[str] = set()
    for code in np.unique(category):
        rows = rng.permutation(np.flatnonzero(category == code))
        while len(rows):
            size = int(rng.choice(sizes, p=size_p))
            name = ""
            while not name or name in used:
                chosen = rng.choice(words, int(rng.choice(lengths, p=length_p)), p=word_p)
                name = "_".join([*chosen, CATEGORY[int(code)].capitalize()])
            used.add(name)
            folders.append((name, np.sort(rows[:size])))
            rows = rows[size:]
    order, names = [], []
    for i in rng.permutation(len(folders)):
        name, rows = folders[i]
        numbers = np.cumsum(rng.choice(steps, len(rows), p=step_p))
        order.append(rows)
        names += [f"img/{name}/img_{number:08d}.jpg" for number in numbers]
    return np.concatenate(order), names


def interleaved_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """0-based (train, test) rows: alternating runs with the real ratio, the first row in test."""
    is_test = np.zeros(n, bool)
    start, test = 0, True
    while start < n:
        mean = _TEST_RUN if test else _TRAIN_RUN
        run = int(rng.geometric(1 / mean))
        is_test[start : start + run] = test
        start, test = start + run, not test
    if is_test.all():  # tiny n: keep a train image
        is_test[-1] = False
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def pair_test_images(test: np.ndarray, outfit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each test row, another test row whose outfit (colour, sleeve, category) differs.

    `outfit` holds one key per row of the benchmark; falls back to any other test row where
    every test row wears the same outfit.
    """
    keys = outfit[test]
    pairs = np.empty(len(test), np.int64)
    for i, key in enumerate(keys):
        candidates = np.flatnonzero(keys != key)
        if not len(candidates):
            candidates = np.delete(np.arange(len(test)), i)
        pairs[i] = test[rng.choice(candidates)] if len(candidates) else test[i]
    return pairs
