"""Reading `params.yaml`: the whole file, checked against its typed model
(`fashion.core.params_model`), or one section with an error that names it (a
training stage's with the one training seed); `merged`, the one way a profile or an
override is laid onto params; and `capped_size`, the one rule for a sample size larger than
what there is to sample."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fashion.core.params_model import SHARED_SECTIONS, check_params
from fashion.core.stage import PipelineError

PARAMS_FILE = Path("params.yaml")
Tree = TypeVar("Tree", bound=dict[str, Any])


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """All of `params.yaml` (stages read their own section and, if needed, shared ones)."""
    if not path.is_file():
        raise PipelineError(f"{path}: parameters file not found (run from the project root)")
    with path.open() as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    check_params(params, str(path))  # every key present: known, of its type, in range
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of the params, with an error that names it when it is missing."""
    if name not in params or not isinstance(params[name], dict):
        raise PipelineError(f"{PARAMS_FILE}: missing section '{name}'")
    return params[name]


def with_shared(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Section `name` with the keys of the shared section it reads, if any (`sd_training` for
    the SD fine-tuners): all its stage reads."""
    own = section(params, name)
    shared = params.get(SHARED_SECTIONS.get(name, ""))  # checked by the params model
    return {**shared, **own} if isinstance(shared, dict) else own


def training_section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A training stage's section with `seed` set from `training.seed`: one param seeds every
    training stage (initialisation, batch order, noise), so `dvc exp run -S training.seed=N`
    gives another training run while the split, sampling and evaluation seeds stay fixed.
    The SD fine-tuners' sections also get the recipe they share, `sd_training` (its keys are
    in one place only: the params model refuses a key set in both)."""
    params_of_stage = with_shared(params, name)
    if "seed" in params_of_stage:
        raise PipelineError(
            f"{PARAMS_FILE}: {name}.seed is not a param: set training.seed (it seeds every "
            "training stage)"
        )
    seed = section(params, "training").get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise PipelineError(
            f"{PARAMS_FILE}: training.seed must be a non-negative integer, got {seed!r}"
        )
    return {**params_of_stage, "seed": seed}


def capped_size(size: Any, available: int, param: str, holder: str) -> Any:
    """A sample size from params.yaml (a number or "all") as it is, or "all" with a warning
    when it is a number larger than the `available` items; the warning names the param and
    `holder` (what holds them, e.g. "the validation split holds 204 images")."""
    if isinstance(size, int) and not isinstance(size, bool) and size > available:
        warnings.warn(
            f"{PARAMS_FILE}: {param}={size}, but {holder}: using all of them", stacklevel=3
        )
        return "all"
    return size


def merged(base: Tree, override: Mapping[str, Any], *, known_keys_only: bool = False) -> Tree:
    """`base` with every leaf of `override` set in it, as a new tree (neither input changes).

    A mapping in `override` over a mapping in `base` is merged key by key, recursively.
    Anything else replaces the value whole: a list (never appended to or merged item by
    item), a scalar, None (the key is kept, its value becomes None), an empty mapping (the
    value becomes `{}`), or a mapping over a non-mapping. Keys that `base` lacks are added,
    or with `known_keys_only` refused with a KeyError naming the dotted path (a typo in a
    profile). The result is a deep copy of `base`, of its type (a ruamel.yaml round-trip
    map keeps its comments and key order).
    """
    out = copy.deepcopy(base)
    _merge_into(out, override, known_keys_only, "")
    return out


def _merge_into(
    base: dict[str, Any], override: Mapping[str, Any], known_only: bool, where: str
) -> None:
    for key, value in override.items():
        path = f"{where}.{key}" if where else str(key)
        if known_only and key not in base:
            raise KeyError(f"unknown parameter '{path}'")
        if isinstance(value, Mapping) and value and isinstance(base.get(key), Mapping):
            _merge_into(base[key], value, known_only, path)
        else:
            base[key] = copy.deepcopy(value)
