"""The attributes of a Fashion Synthesis image and their code -> name maps.

Derived from the real annotations (`Anno/language_original.mat`), not guessed: the category
code agrees with the item folder name in `nameList` in every row (its last word), and the
colour and sleeve codes agree with the caption's words wherever the caption names them.
`tests/test_labels.py` pins every map against the real annotations.
Gender is 0-based; every other code is 1-based.
"""

from __future__ import annotations

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

# The four attributes every image is coded with, in the one order the pipeline uses.
ATTRIBUTES: tuple[str, ...] = ("gender", "color", "sleeve", "category")

LABEL_MAPS: dict[str, dict[int, str]] = {
    "gender": GENDER,
    "color": COLOR,
    "sleeve": SLEEVE,
    "category": CATEGORY,
}

# Classes of the segmentation maps (`b_` in G2.h5, `segmentation` in the subset).
SEGMENTATION: dict[int, str] = {
    0: "background", 1: "hair", 2: "face", 3: "upper clothes", 4: "lower clothes", 5: "legs",
    6: "arms",
}  # fmt: skip
# One display colour per segmentation class, in its order (figures of maps).
SEGMENTATION_COLORS = ("#000000", "#8c564b", "#ffbb78", "#d62728", "#1f77b4", "#2ca02c", "#e377c2")

# The word a caption uses for each gender ("the lady wore ...", "the man is wearing ...").
GENDER_NOUN: dict[int, str] = {0: "lady", 1: "man"}
