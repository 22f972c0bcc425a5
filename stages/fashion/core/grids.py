"""Figures of image rows: each row an input, the sentence it was given, and what models
made of it (the redress grid, the shape stage's maps)."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HEADER = 20  # px above the rows: the column names


def sentence_grid(
    inputs: np.ndarray, sentences: list[str], columns: dict[str, np.ndarray]
) -> Image.Image:
    """Rows of: input | sentence | one image per entry of `columns` (uint8 HWC images, the
    inputs' size), under a header naming the columns."""
    cell = inputs.shape[1]
    names = ["input", "target sentence", *columns]
    header = HEADER
    sheet = Image.new("RGB", (cell * len(names), header + cell * len(inputs)), "white")
    draw = ImageDraw.Draw(sheet)
    font = grid_font(12)
    for j, name in enumerate(names):
        draw.text((j * cell + 4, 4), name, fill="black", font=font)
    for i, (image, sentence) in enumerate(zip(inputs, sentences, strict=True)):
        top = header + i * cell
        sheet.paste(Image.fromarray(image), (0, top))
        text = "\n".join(textwrap.wrap(sentence, width=cell // 7))
        draw.multiline_text((cell + 4, top + 8), text, fill="black", font=font, spacing=3)
        for j, images in enumerate(columns.values()):
            sheet.paste(Image.fromarray(images[i]), ((j + 2) * cell, top))
    return sheet


def grid_font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at `size` px (a fixed small one before Pillow 10.1)."""
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()
