"""The benchmark's caption sentences: composed from attribute codes, and parsed back.

Real captions are templates over gender, colour, sleeve and category, e.g.
"the lady was wearing a blue long-sleeved blouse." `TEMPLATES` are the most frequent
patterns of `language_original.mat`; `compose_caption` fills one. The parsers
(`caption_color` & co.) read which value a caption names, if any, and `caption_keywords`
flags descriptive terms beyond the four coded labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fashion.data.attributes import CATEGORY, COLOR, GENDER_NOUN, SLEEVE

TEMPLATES: tuple[str, ...] = (
    "the {gender} is wearing a {color} {sleeve} {category}.",
    "the {gender} wore a {color} {sleeve} {category}.",
    "the {gender} was wearing a {color} {sleeve} {category}.",
)


def compose_caption(
    gender: int, color: int, sleeve: int, category: int, template: str = TEMPLATES[0]
) -> str:
    """A caption naming the given codes (gender 0-based, others 1-based), as the benchmark does.

    An unspecified sleeve (code 4) is left out of the sentence; "a" becomes "an" before a vowel.
    """
    sleeve_word = "" if SLEEVE[sleeve] == "unspecified" else SLEEVE[sleeve]
    text = template.format(
        gender=GENDER_NOUN[gender],
        color=COLOR[color],
        sleeve=sleeve_word,
        category=CATEGORY[category],
    )
    text = " ".join(text.split())
    for vowel in "aeiou":
        text = text.replace(f" a {vowel}", f" an {vowel}")
    return text


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

_GENDER_OF_WORD: dict[str, int] = {"lady": 0, "woman": 0, "girl": 0, "ms": 0, "man": 1, "boy": 1}

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
    return next((_GENDER_OF_WORD[t] for t in caption_tokens(caption) if t in _GENDER_OF_WORD), None)


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


CAPTION_PARSERS: dict[str, Callable[[str], int | None]] = {
    "gender": caption_gender,
    "color": caption_color,
    "sleeve": caption_sleeve,
    "category": caption_category,
}
