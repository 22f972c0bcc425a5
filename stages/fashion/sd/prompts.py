"""Generation prompts: the prompt grid from the label vocabulary, free-form ones, those of a
prompt file, and the matched set (the captions of a sample of evaluated images, one image each).

Each `Prompt` carries the attribute codes it names (None where it names none), so the
generated images can be scored for attribute faithfulness, a matched prompt the subset row
whose caption it is, and a prompt file's prompt its line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
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
    source: str  # in_domain (the grid) | free_form | prompt_file | matched
    gender: int | None = None
    color: int | None = None
    sleeve: int | None = None
    category: int | None = None
    row: int | None = None  # matched: the row of the evaluated split's subset file
    line: int | None = None  # prompt_file: the 1-based line in the file


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


def matched_prompts(table: pd.DataFrame, rows: np.ndarray) -> list[Prompt]:
    """One prompt per evaluated image: its caption and codes, and its subset row."""
    return [
        Prompt(r.caption, "matched", *(int(getattr(r, a)) for a in ATTRIBUTES), int(row))
        for r, row in zip(table.itertuples(), rows, strict=True)
    ]


def build_prompts(spec: dict[str, Any]) -> list[Prompt]:
    """The prompt grid and the free-form prompts of the `generate.prompts` params."""
    prompts = in_domain_prompts(
        list(spec.get("genders", [])),
        list(spec.get("colors", [])),
        list(spec.get("sleeves", [])),
        list(spec.get("categories", [])),
    )
    if "n_test_captions" in spec:
        raise PipelineError(
            f"{PARAMS_FILE}: generate.prompts.n_test_captions is gone: every evaluated image's "
            "caption is generated (the matched set, reference.n_images)"
        )
    return prompts + [Prompt(str(t), "free_form") for t in spec.get("free_form", []) or []]


def file_prompts(path: Path) -> list[Prompt]:
    """The prompts of a text file, one a line; blank lines and `#` comment lines are skipped."""
    if not path.is_file():
        raise PipelineError(f"{path}: prompt file not found ({PARAMS_FILE}: generate.prompts_file)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is no prompt
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise PipelineError(f"{path}, line {line}: not UTF-8 text") from err
    lines = (s.strip() for s in text.split("\n"))
    prompts = [
        Prompt(t, "prompt_file", line=i)
        for i, t in enumerate(lines, 1)
        if t and not t.startswith("#")
    ]
    if not prompts:
        raise PipelineError(f"{path}: no prompts (only blank lines and # comments)")
    return prompts
