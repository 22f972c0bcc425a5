"""What `reference`, `generate` and `evaluate` share about the real images: the device, row
samples, and the size images are compared at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashion.core.params import PARAMS_FILE, section
from fashion.core.stage import PipelineError
from fashion.data.subset import read_images, sample_rows


def compute_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def sampled_rows(n_rows: int, n: int | str, seed: int, param: str) -> np.ndarray:
    """Positions of a fixed-seed sample of `n` of `n_rows` (all, in order, for "all")."""
    try:
        return sample_rows(n_rows, n, seed)
    except PipelineError as err:
        raise PipelineError(f"{PARAMS_FILE}: reference.{param}: {err}") from err


def evaluation_size(params: dict[str, Any], subset_file: Path) -> tuple[int, int]:
    """(evaluation size, real image size): the smaller of the generated and real sizes."""
    real_size = read_images(subset_file, slice(0, 1)).shape[1]
    return min(int(section(params, "generate")["resolution"]), real_size), real_size
