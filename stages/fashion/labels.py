"""Code -> name maps of the Fashion Synthesis annotations (`Anno/language_original.mat`).

Derived from the real file, not guessed: the category code agrees with the item
folder name in `nameList` in every row (its last word), and the colour and sleeve
codes agree with the caption's words wherever the caption names them.
`tests/test_labels.py` pins every map against the real annotations.
Gender is 0-based; every other code is 1-based.

Also here: caption parsing (`caption_color` & co.: which value a caption names, if any),
keyword flags for descriptive caption terms (`caption_keywords`), and the labels stage's
per-image table (`label_table`) with its code/caption agreement metrics (`agreement`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fashion.config import PipelineError

CATEGORY: dict[int, str] = {
    1: "blazer", 2: "blouse", 3: "bomber", 4: "cardigan", 5: "henley", 6: "hoodie",
    7: "jacket", 8: "jersey", 9: "parka", 10: "poncho", 11: "sweater", 12: "tank",
    13: "tee", 14: "top", 15: "coat", 16: "dress", 17: "jumpsuit", 18: "kimono",
    19: "romper",
}  # fmt: skip

COLOR: dict[int, str] = {
    1: "red", 2: "blue", 3: "white", 4: "pink", 5: "orange", 6: "black", 7: "brown",
    8: "green", 9: "purple", 10: "yellow", 11: "khaki", 12: "gray", 13: "beige",
    14: "blonde", 15: "silver", 16: "olive", 17: "multicolor",
}  # fmt: skip

SLEEVE: dict[int, str] = {1: "long-sleeved", 2: "short-sleeved", 3: "sleeveless", 4: "unspecified"}

GENDER: dict[int, str] = {0: "female", 1: "male"}

LABEL_MAPS: dict[str, dict[int, str]] = {
    "category": CATEGORY,
    "color": COLOR,
    "sleeve": SLEEVE,
    "gender": GENDER,
}

# Classes of the segmentation maps (`b_` in G2.h5, `segmentation` in the subset).
SEGMENTATION: dict[int, str] = {
    0: "background", 1: "hair", 2: "face", 3: "upper clothes", 4: "lower clothes", 5: "legs",
    6: "arms",
}  # fmt: skip

# The word a caption uses for each gender ("the lady wore ...", "the man is wearing ...").
GENDER_NOUN: dict[int, str] = {0: "lady", 1: "man"}

# ---------------------------------------------------------------------------------------------
# Caption parsing: which gender, colour, sleeve and category word a caption names, if any.
# Measured on the 78,979 real captions (`tests/test_labels.py` pins the figures): wherever a
# caption names one, it agrees with the code in >= 99.8% of rows; the rest are annotation noise
# (e.g. "a blazer with a multicolor sleeveless look." coded as a blouse).
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*")

# Spellings of the multicolour code (17) in the captions, besides "multicolor" itself.
MULTICOLOR_WORDS: frozenset[str] = frozenset(
    {"multicolor", "multi-color", "multi-colored", "multicolored", "colorful", "polychrome",
     "polychromatic"}
)  # fmt: skip

GENDER_WORDS: dict[str, int] = {"lady": 0, "woman": 0, "girl": 0, "ms": 0, "man": 1, "boy": 1}

# "long-sleeved", "long sleeve(s)", "long sleeved" and "long, sleeved" name the same sleeve.
_SLEEVE_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(r"\blong(?:-|,? )sleeve(?:d|s)?\b")),
    (2, re.compile(r"\bshort(?:-|,? )sleeve(?:d|s)?\b")),
    (3, re.compile(r"\bsleeveless\b")),
)

# Descriptive caption terms beyond the four coded labels, grouped into flags: the frequent ones
# in the real captions (rows flagged: letters 2,533, printed 1,122, animal 250, floral 120,
# symbol 119, figure 88, cartoon 86, shade 43). Stripes, lace, denim, hoods or collars are
# (almost) never mentioned there.
KEYWORDS: dict[str, frozenset[str]] = {
    "letters": frozenset(
        {"letter", "letters", "alphabet", "english", "character", "characters", "logo", "numbers"}
    ),
    "printed": frozenset({"printed", "print", "prints", "pattern", "patterns", "patterned",
                          "digital"}),
    "floral": frozenset({"flower", "flowers", "floral", "roses", "rosette", "sunflower",
                         "leaves"}),
    "animal": frozenset(
        {"animal", "cat", "dog", "elephant", "elephants", "tiger", "tigers", "leopard", "horse",
         "horses", "lion", "lions", "bear", "owl", "owls", "butterfly", "butterflies", "bird",
         "deer", "wolf", "eagle", "eagles", "rabbit", "rabbits", "dinosaur", "dinosaurs", "cow",
         "parrot", "peacock", "sheep", "shark", "fox", "bat", "swallow", "cobra", "bulls"}
    ),
    "cartoon": frozenset({"cartoon", "mickey", "minnie", "snoopy", "spiderman", "animated",
                          "ninja", "sponge"}),
    "symbol": frozenset(
        {"flag", "heart", "heart-shaped", "star", "stars", "five-pointed", "skull", "skeleton",
         "skeletons", "cross", "anchor", "lightning", "diamond"}
    ),
    "figure": frozenset({"figure", "figures", "face", "head", "portraits", "picture", "human"}),
    "shade": frozenset({"dark", "light", "pale"}),  # a qualified colour: "dark blue"
}  # fmt: skip

_COLOR_CODE = {name: code for code, name in COLOR.items()}
_CATEGORY_CODE = {name: code for code, name in CATEGORY.items()}
MULTICOLOR = _COLOR_CODE["multicolor"]


def caption_tokens(caption: str) -> list[str]:
    """Lower-case words of a caption; hyphenated words ("long-sleeved") stay whole."""
    return _TOKEN.findall(caption.lower())


def caption_gender(caption: str) -> int | None:
    """Gender code of the first person noun ("lady", "man", ...), None when there is none."""
    return next((GENDER_WORDS[t] for t in caption_tokens(caption) if t in GENDER_WORDS), None)


def caption_color(caption: str) -> int | None:
    """Colour code a caption names: a multicolour spelling or two different colours
    ("black and white") name multicolour; None when it names no colour."""
    tokens = caption_tokens(caption)
    if any(t in MULTICOLOR_WORDS for t in tokens):
        return MULTICOLOR
    named = {_COLOR_CODE[t] for t in tokens if t in _COLOR_CODE}
    if not named:
        return None
    return named.pop() if len(named) == 1 else MULTICOLOR


def caption_sleeve(caption: str) -> int | None:
    """Sleeve code (1 long, 2 short, 3 sleeveless) a caption names; None when it names none
    or names two different ones. Captions never name code 4, "unspecified"."""
    text = caption.lower()
    named = {code for code, pattern in _SLEEVE_PATTERNS if pattern.search(text)}
    return named.pop() if len(named) == 1 else None


def caption_category(caption: str) -> int | None:
    """Category code of the first garment word ("tee", "tops" ...), None when there is none."""
    for token in caption_tokens(caption):
        for word in (token, token[:-1] if token.endswith("s") else token):
            if word in _CATEGORY_CODE:
                return _CATEGORY_CODE[word]
    return None


def caption_keywords(caption: str) -> dict[str, bool]:
    """One flag per `KEYWORDS` group: does the caption use any of its words?"""
    tokens = set(caption_tokens(caption))
    return {flag: not tokens.isdisjoint(words) for flag, words in KEYWORDS.items()}


def folder_category(name: str) -> int | None:
    """Category code of an image name's item folder, whose last word is the category:
    "img/Sheer_Pleated-Front_Blouse/img_00000001.jpg" -> 2 (blouse)."""
    parts = name.split("/")
    if len(parts) < 2:
        return None
    return _CATEGORY_CODE.get(parts[-2].split("_")[-1].lower())


# ---------------------------------------------------------------------------------------------
# The label table of the labels stage and its agreement metrics.
# ---------------------------------------------------------------------------------------------

CAPTION_PARSERS: dict[str, Callable[[str], int | None]] = {
    "gender": caption_gender,
    "color": caption_color,
    "sleeve": caption_sleeve,
    "category": caption_category,
}


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
