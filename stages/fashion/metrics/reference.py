"""What `reference` and `evaluate` share about the real images: the size images are
compared at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashion.core.params import section
from fashion.data.subset import read_images


def evaluation_size(params: dict[str, Any], subset_file: Path) -> tuple[int, int]:
    """(evaluation size, real image size): the smaller of the generated and real sizes."""
    real_size = read_images(subset_file, slice(0, 1)).shape[1]
    return min(int(section(params, "generate")["resolution"]), real_size), real_size
