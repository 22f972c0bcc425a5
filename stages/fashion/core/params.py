"""Reading `params.yaml`: the whole file, or one section with an error that names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fashion.core.stage import PipelineError

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """All of `params.yaml` (stages read their own section and, if needed, shared ones)."""
    if not path.is_file():
        raise PipelineError(f"{path}: parameters file not found (run from the project root)")
    with path.open() as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of the params, with an error that names it when it is missing."""
    if name not in params or not isinstance(params[name], dict):
        raise PipelineError(f"{PARAMS_FILE}: missing section '{name}'")
    return params[name]

