"""The real-image reference that `reference`, `embed_reference` and `evaluate` share: which
test and train rows it holds, and the size images are compared at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashion.core.params import PARAMS_FILE, section
from fashion.core.stage import PipelineError
from fashion.data.subset import open_subset, read_images, sample_rows


def compute_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def reference_rows(path: Path, n: int | str, seed: int, param: str) -> np.ndarray:
    """Rows of a fixed-seed sample of a subset split (all rows, in order, for "all")."""
    with open_subset(path) as f:
        n_rows = len(f["images"])
    try:
        return sample_rows(n_rows, n, seed)
    except PipelineError as err:
        raise PipelineError(f"{PARAMS_FILE}: reference.{param}: {err}") from err


def evaluation_size(params: dict[str, Any], test: Path) -> tuple[int, int]:
    """(evaluation size, real image size): the smaller of the generated and real sizes."""
    real_size = read_images(test, slice(0, 1)).shape[1]
    return min(int(section(params, "generate")["resolution"]), real_size), real_size
