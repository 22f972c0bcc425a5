"""The pipeline's outputs the app reads: paths from dvc.yaml (`vars.paths`, the one place
they are set), params from params.yaml, and the models, each loaded once on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

from fashion.core.params import load_params, section
from fashion.core.stage import PipelineError

T = TypeVar("T")


class AppError(Exception):
    """What the page shows instead of a result: one sentence the user can act on."""


@contextmanager
def as_app_errors() -> Iterator[None]:
    """The pipeline's one-line errors, and a GPU out of memory, as `AppError`s."""
    try:
        yield
    except PipelineError as err:
        raise AppError(str(err)) from err
    except torch.cuda.OutOfMemoryError as err:
        raise AppError("the GPU ran out of memory: ask for fewer images") from err


@dataclass
class Outputs:
    """The project at `root`: its output paths (dvc.yaml) and params (params.yaml)."""

    root: Path
    paths: dict[str, str]
    params: dict[str, Any]
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)
    # re-entrant: loading one thing may load another (embeddings need their CLIP)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def path(self, name: str) -> Path:
        """The output `name` of dvc.yaml's paths, or an `AppError` saying how to make it."""
        relative = self.paths[name]
        found = self.root / relative
        if not found.exists():
            raise AppError(f"run `dvc repro` first: {relative} is missing")
        return found

    def section(self, name: str) -> dict[str, Any]:
        return section(self.params, name)

    def load(self, name: str, make: Callable[[], T]) -> T:
        """`make()` the first time `name` is asked for, the same object after (one load even
        when the page's handlers ask at once)."""
        with self._lock:
            if name not in self._loaded:
                with as_app_errors():
                    self._loaded[name] = make()
            return self._loaded[name]


def read_outputs(root: str | Path = ".") -> Outputs:
    """The outputs of the project at `root` (its dvc.yaml and params.yaml). Run in that folder:
    the model folders record local paths relative to it, as the stages ran there."""
    root = Path(root)
    dvc_file = root / "dvc.yaml"
    if not dvc_file.is_file():
        raise AppError(f"{dvc_file}: not found: start the app in the project's folder")
    variables = yaml.safe_load(dvc_file.read_text()).get("vars", [])
    paths = next((v["paths"] for v in variables if isinstance(v, dict) and "paths" in v), None)
    if paths is None:
        raise AppError(f"{dvc_file}: no vars.paths")
    with as_app_errors():
        params = load_params(root / "params.yaml")
    return Outputs(root, paths, params)


def checked_text(text: str | None, tokenizer: Any, empty: str) -> str:
    """`text` stripped, or an `AppError`: `empty` when there is none, the loaded text
    encoder's limit when it is longer (77 tokens on SD v1.5; the demo's tiny one takes fewer)."""
    stripped = (text or "").strip()
    if not stripped:
        raise AppError(empty)
    limit = tokenizer.model_max_length
    tokens = len(tokenizer(stripped, verbose=False).input_ids)
    if tokens > limit:
        raise AppError(
            f"the text has {tokens} tokens; the loaded text encoder takes at most {limit}"
        )
    return stripped


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
