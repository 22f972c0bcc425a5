"""Generation prompts: in-domain ones from the label vocabulary, free-form ones, test captions.

Each `Prompt` carries the attribute codes it names (None where it names none), so the
generated images can be scored for attribute faithfulness.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.data.attributes import ATTRIBUTES, CATEGORY, COLOR, GENDER, SLEEVE
from fashion.data.captions import TEMPLATES, compose_caption


@dataclass(frozen=True)
class Prompt:
    text: str
    source: str  # in_domain | free_form | test_caption
    gender: int | None = None
    color: int | None = None
    sleeve: int | None = None
    category: int | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _codes(names: list[str], mapping: dict[int, str], what: str) -> list[int]:
    by_name = {name: code for code, name in mapping.items()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise PipelineError(
            f"{PARAMS_FILE}: generate.prompts.{what}: unknown names {unknown} "
            f"(known: {sorted(by_name)})"
        )
    return [by_name[n] for n in names]


def in_domain_prompts(
    genders: list[str], colors: list[str], sleeves: list[str], categories: list[str]
) -> list[Prompt]:
    """Every gender x colour x sleeve x category, in the captions' sentence patterns
    (the templates taken in turn)."""
    combos = itertools.product(
        _codes(genders, GENDER, "genders"),
        _codes(colors, COLOR, "colors"),
        _codes(sleeves, SLEEVE, "sleeves"),
        _codes(categories, CATEGORY, "categories"),
    )
    return [
        Prompt(compose_caption(g, c, s, k, TEMPLATES[i % len(TEMPLATES)]), "in_domain", g, c, s, k)
        for i, (g, c, s, k) in enumerate(combos)
    ]


def test_caption_prompts(table: pd.DataFrame, n: int, seed: int) -> list[Prompt]:
    """A fixed-seed sample of `n` test captions, with their rows' codes."""
    if n <= 0:
        return []
    rows = np.sort(
        np.random.default_rng(seed).choice(len(table), min(n, len(table)), replace=False)
    )
    return [
        Prompt(r.caption, "test_caption", *(int(getattr(r, a)) for a in ATTRIBUTES))
        for r in table.iloc[rows].itertuples()
    ]


def build_prompts(spec: dict[str, Any], test_table: pd.DataFrame | None) -> list[Prompt]:
    """All prompts of the `generate.prompts` params; an empty list is an error."""
    prompts = in_domain_prompts(
        list(spec.get("genders", [])),
        list(spec.get("colors", [])),
        list(spec.get("sleeves", [])),
        list(spec.get("categories", [])),
    )
    prompts += [Prompt(str(t), "free_form") for t in spec.get("free_form", []) or []]
    n_test = int(spec.get("n_test_captions", 0) or 0)
    if n_test and test_table is not None:
        prompts += test_caption_prompts(test_table, n_test, int(spec.get("seed", 0)))
    if not prompts:
        raise PipelineError(
            f"{PARAMS_FILE}: generate.prompts gives no prompts (set genders, colors, sleeves and "
            "categories, free_form, or n_test_captions)"
        )
    return prompts
