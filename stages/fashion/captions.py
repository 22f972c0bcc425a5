"""Captions in the benchmark's sentence patterns, from attribute codes.

Real captions are templates over gender, colour, sleeve and category, e.g.
"the lady was wearing a blue long-sleeved blouse." The templates below are the
most frequent patterns of `language_original.mat` (placeholders: {gender} noun,
{color}, {sleeve}, {category}).
"""

from __future__ import annotations

from fashion.labels import CATEGORY, COLOR, GENDER_NOUN, SLEEVE

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
