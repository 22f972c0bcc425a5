"""The RGB of each colour name of the benchmark's colour vocabulary (`attributes.COLOR`).

It lives with the attribute maps, not with the drawing: the demo drawings paint their
garments in it, the pixel colour judge (`fashion.metrics.garment_color`) reads it back from
the pixels, and the EDA figures draw each colour bar in it; all three import it from here.
The values fix the demo's images: changing one changes every drawing.
"""

from __future__ import annotations

# RGB in [0, 1] of every colour name (code 17, multicolor, is drawn as a pattern).
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.08, 0.10),
    "blue": (0.12, 0.25, 0.78),
    "white": (0.98, 0.98, 0.97),
    "pink": (0.97, 0.58, 0.74),
    "orange": (0.96, 0.50, 0.08),
    "black": (0.07, 0.07, 0.08),
    "brown": (0.45, 0.26, 0.11),
    "green": (0.12, 0.58, 0.22),
    "purple": (0.50, 0.18, 0.62),
    "yellow": (0.97, 0.86, 0.10),
    "khaki": (0.72, 0.65, 0.42),
    "gray": (0.50, 0.50, 0.52),
    "beige": (0.91, 0.84, 0.70),
    "blonde": (0.95, 0.86, 0.52),
    "silver": (0.76, 0.79, 0.86),
    "olive": (0.40, 0.44, 0.12),
}
