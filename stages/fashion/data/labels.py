"""The labels stage's per-image table (`label_table`) and its code/caption agreement metrics
(`agreement`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fashion.core.stage import PipelineError
from fashion.data.attributes import LABEL_MAPS
from fashion.data.captions import CAPTION_PARSERS, KEYWORDS, caption_keywords, folder_category


def label_table(table: pd.DataFrame, split: str, source: str | Path) -> pd.DataFrame:
    """One row per image: index, split, name, caption, each code with its name, keyword flags.

    `table` is a subset's `read_table`; a code outside its map raises a `PipelineError`
    naming `source`.
    """
    out = pd.DataFrame(
        {"index": table["index"].astype("int64"), "split": split, "name": table["name"],
         "caption": table["caption"]}
    )  # fmt: skip
    for attr, names in LABEL_MAPS.items():
        codes = table[attr].astype("int64")
        unknown = sorted(int(c) for c in set(codes) - set(names))
        if unknown:
            raise PipelineError(
                f"{source}: unknown {attr} codes {unknown} (known: {sorted(names)})"
            )
        out[attr] = codes
        out[f"{attr}_name"] = codes.map(names)
    flags = pd.DataFrame([caption_keywords(c) for c in table["caption"]], columns=list(KEYWORDS))
    return pd.concat([out, flags.add_prefix("kw_").set_index(out.index)], axis=1)


def _rate(named: int, agree: int) -> dict[str, float | int | None]:
    return {"named": named, "agree": agree, "rate": agree / named if named else None}


def agreement(labels: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Per attribute: how many captions name a value, how many of those agree with the code.

    `category_folder` compares the category code with the last word of the item folder name.
    """
    result = {}
    for attr, parse in CAPTION_PARSERS.items():
        parsed = labels["caption"].map(parse)
        named = parsed.notna()
        result[attr] = _rate(int(named.sum()), int((parsed[named] == labels[attr][named]).sum()))
    folder = labels["name"].map(folder_category)
    result["category_folder"] = _rate(
        int(folder.notna().sum()), int((folder == labels["category"]).sum())
    )
    return result


def label_maps_json() -> dict[str, dict[str, str]]:
    """`LABEL_MAPS` with string keys, as written to `label_maps.json`."""
    return {attr: {str(code): name for code, name in m.items()} for attr, m in LABEL_MAPS.items()}
