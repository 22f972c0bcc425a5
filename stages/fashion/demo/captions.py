"""Captions in the benchmark's sentence patterns, from attribute codes.

Real captions are templates over gender, colour, sleeve and category, e.g.
"the lady was wearing a blue long-sleeved blouse." The templates below are the
most frequent patterns of `language_original.mat` (placeholders: {gender} noun,
{color}, {sleeve}, {category}).

`sample_captions` draws captions with the real pattern frequencies (per sleeve code)
and the real word variants ("multi-colored", "woman"), from the statistics in
`assets/` (derived by `scripts/derive_demo_assets.py`); `word_ids` turns a caption
into its `codeJ` word ids.

Phrasing (`PHRASINGS`): "image" draws the pattern and word variants for every image;
"outfit" draws them once per attribute combination (gender, colour, sleeve, category), so
identical outfits share one caption text. No drawing shows whether its caption said
"wore" or "is wearing", "lady" or "woman": with per-image phrasing, caption-level
retrieval has a ceiling well below 1 (~0.65 at 270 test pairs) that says nothing about
what a model sees. The real captions are written per item, not per image."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from fashion.data.attributes import CATEGORY, COLOR, GENDER_NOUN, SLEEVE

ASSETS = Path(__file__).resolve().parent / "assets"
# Words the real captions use for a gender, and for the multicolour code.
GENDER_VARIANTS: dict[int, tuple[str, ...]] = {0: ("lady", "woman", "girl"), 1: ("man", "boy")}
PHRASINGS = ("outfit", "image")
COLOR_VARIANTS: dict[str, tuple[str, ...]] = {
    "multicolor": ("multicolor", "multi-color", "multi-colored", "multicolored"),
}


def codej_words(caption: str) -> list[str]:
    """The words of a caption as `codeJ` counts them: split on spaces, '.' and ',' dropped."""
    return re.findall(r"[^\s.,]+", caption)


def _fill(pattern: str, words: dict[str, str]) -> str:
    text = pattern.format(**words)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


@dataclass(frozen=True)
class CaptionModel:
    """Sentence patterns per sleeve code and word variants per code, with their frequencies."""

    patterns: dict[int, tuple[list[str], np.ndarray]]  # sleeve -> (patterns, probabilities)
    words: dict[tuple[str, int], tuple[list[str], np.ndarray]]  # (field, code) -> variants
    vocabulary: dict[str, int]  # word -> codeJ id

    def sample(
        self,
        gender: np.ndarray,
        color: np.ndarray,
        sleeve: np.ndarray,
        category: np.ndarray,
        rng: np.random.Generator,
        phrasing: str = "image",
    ) -> list[str]:
        """One caption per row of codes, in the real patterns with the real frequencies.

        `phrasing="outfit"` draws one phrasing per distinct (gender, colour, sleeve,
        category) and gives it to every row with those codes (see the module docstring).
        """
        if phrasing == "outfit":
            codes = np.stack([np.asarray(a) for a in (gender, color, sleeve, category)], 1)
            outfits, inverse = np.unique(codes, axis=0, return_inverse=True)
            texts = self.sample(*outfits.T, rng)
            return [texts[i] for i in inverse.ravel().tolist()]
        if phrasing != "image":
            raise ValueError(f"phrasing must be one of {PHRASINGS}, got '{phrasing}'")
        captions = []
        for g, c, s, k in zip(
            *(np.asarray(a).tolist() for a in (gender, color, sleeve, category)), strict=True
        ):
            patterns, p = self.patterns[s]
            words = {
                "gender": self._word("gender", g, GENDER_NOUN[g], rng),
                "color": self._word("color", c, COLOR[c], rng),
                "sleeve": SLEEVE[s],
                "category": CATEGORY[k],
            }
            captions.append(_fill(patterns[rng.choice(len(patterns), p=p)], words))
        return captions

    def _word(self, field: str, code: int, default: str, rng: np.random.Generator) -> str:
        if (field, code) not in self.words:
            return default
        variants, p = self.words[field, code]
        return variants[rng.choice(len(variants), p=p)]

    def word_ids(self, caption: str) -> np.ndarray:
        """The caption's `codeJ` word ids (KeyError for a word outside the vocabulary)."""
        return np.array([self.vocabulary[w] for w in codej_words(caption)], dtype=np.uint16)


def _normalised(counts: list[int]) -> np.ndarray:
    p = np.asarray(counts, dtype=np.float64)
    return p / p.sum()


@cache
def caption_model(assets: Path = ASSETS) -> CaptionModel:
    """The caption statistics of the real annotations (committed in `assets/`)."""
    by_sleeve: dict[int, tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
    with open(assets / "caption_patterns.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_sleeve[int(row["sleeve"])][0].append(row["pattern"])
            by_sleeve[int(row["sleeve"])][1].append(int(row["count"]))
    by_code: dict[tuple[str, int], tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
    with open(assets / "caption_words.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_code[row["field"], int(row["code"])][0].append(row["word"])
            by_code[row["field"], int(row["code"])][1].append(int(row["count"]))
    with open(assets / "vocabulary.csv", newline="") as f:
        vocabulary = {row["word"]: int(row["id"]) for row in csv.DictReader(f)}
    return CaptionModel(
        patterns={s: (ps, _normalised(cs)) for s, (ps, cs) in by_sleeve.items()},
        words={key: (ws, _normalised(cs)) for key, (ws, cs) in by_code.items()},
        vocabulary=vocabulary,
    )
