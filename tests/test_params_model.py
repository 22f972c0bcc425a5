"""params.yaml as a typed interface (`fashion.core.params_model`): each class of bad value
stops a stage before it reads anything, in one line naming the key, with exit 1 and its
outputs untouched; every shipped profile validates; the schema file is the model's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, run
from fashion.core.params import merged
from fashion.core.params_model import Params, ParamsError, check_params, json_schema

PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
# profiles that stack, as the docs apply them
STACKS = [("real", "colab"), ("real", "smoke"), ("real", "smoke", "smoke-cpu"),
          ("real", "seed"), ("real", "all-pairs")]  # fmt: skip


def shipped() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(section: str, key: str, value: Any) -> dict[str, Any]:
    params = shipped()
    target = params
    *parents, leaf = [section, *key.split(".")]
    for name in parents:
        target = target[name]
    target[leaf] = value
    return params


# one key per stage section at least, each class of bad value: (section, key, value, problem)
BAD = [
    ("demo", "n_images", 5, "must be ≥ 20, got 5"),
    ("prepare", "n_train_images", 0, "must be an integer ≥ 1 or 'all', got 0"),
    ("split", "evaluate", "val", "must be one of 'test' or 'validation', got 'val'"),
    ("eda", "stop_words", ["a", True], "must be a string (item 1), got True"),
    ("base_clip", "tiny.patch_size", "eight", "must be an integer, got 'eight'"),
    ("finetune_clip", "lr", "fast", "must be a number, got 'fast'"),
    ("eval_clip", "batch_size", -1, "must be ≥ 1, got -1"),
    ("base_sd", "tiny.resolution", 60, "must be a multiple of 8, got 60"),
    ("finetune_sd", "caption_dropout", 1.5, "must be ≤ 1, got 1.5"),
    ("finetune_sd", "ema", "yes", "must be true or false, got 'yes'"),
    ("reshape", "coarse_cells", "mean", "must be one of 'majority' or 'shares', got 'mean'"),
    ("finetune_inpaint", "map_dropout", -0.1, "must be ≥ 0, got -0.1"),
    ("redress", "resolution", 100, "must be a multiple of 8, got 100"),
    ("generate", "denoising_steps", -3, "must be ≥ 1, got -3"),
    ("reference", "n_images", "some", "must be an integer ≥ 1 or 'all', got 'some'"),
    ("evaluate", "skip_inception", "maybe", "must be true, false or auto, got 'maybe'"),
    ("generate", "guidance_scal", 9.0, "unknown key; did you mean guidance_scale?"),
    ("finetune_sd", "max_steps", 10, "renamed: it is now finetune_sd.steps"),
    ("generate", "steps", 30, "renamed: it is now generate.denoising_steps"),
    (
        "finetune_inpaint",
        "validation_steps",
        4,
        "renamed: it is now finetune_inpaint.validation_denoising_steps",
    ),
    ("redress", "n_pairs", 10, "renamed: it is now redress.n_images"),
    ("finetune_clip", "keep", "last", "renamed: it is now finetune_clip.saved_weights"),
    (
        "finetune_sd",
        "vae_precision",
        None,
        "must be one of 'fp32', 'bf16', 'fp16' or 'auto', got None",
    ),
    ("redress", "precision", "half", "must be one of 'fp32', 'bf16', 'fp16' or 'auto', got 'half'"),
    ("finetune_clip", "seed", 3, "not a param of finetune_clip: set training.seed"),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"), BAD, ids=[f"{b[0]}.{b[1]}" for b in BAD]
)
def test_a_bad_value_is_one_line_naming_the_key(section, key, value, problem) -> None:
    with pytest.raises(ParamsError) as err:
        check_params(with_value(section, key, value))
    assert str(err.value).startswith(f"params.yaml: {section}.{key}: {problem}")
    assert "\n" not in str(err.value)


def test_the_shipped_params_and_every_profile_validate() -> None:
    check_params(shipped(), complete=True)
    layers = {p.stem: yaml.safe_load(p.read_text()) for p in PROFILES}
    for name, layer in layers.items():
        check_params(layer, f"profiles/{name}.yaml")
        check_params(merged(shipped(), layer, known_keys_only=True), complete=True)
    for stack in STACKS:
        params = shipped()
        for name in stack:
            params = merged(params, layers[name], known_keys_only=True)
        check_params(params, " + ".join(stack), complete=True)


def test_a_key_left_out_counts_only_in_a_complete_check() -> None:
    params = shipped()
    del params["generate"]["denoising_steps"]
    check_params(params)  # a stage's check: what is there is right
    with pytest.raises(ParamsError, match=r"params.yaml: generate.denoising_steps: missing"):
        check_params(params, complete=True)


def test_the_schema_file_is_the_model_s() -> None:
    """params.schema.json is generated (`make params-schema`): stale, this fails."""
    committed = json.loads((ROOT / "params.schema.json").read_text())
    assert committed == json_schema(), "run `make params-schema`"
    assert set(committed["properties"]) == set(Params.model_fields)
    for path in [ROOT / "params.yaml", *PROFILES]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=") and first.endswith(
            "params.schema.json"
        ), path


def test_a_stage_stops_before_reading_anything(tmp_path: Path) -> None:
    """A real stage script, run as dvc runs it, with a bad value: one line, exit 1, no
    traceback, and its outputs as they were (here: an old output left untouched)."""
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(with_value("generate", "guidance_scal", 9.0), sort_keys=False)
    )
    out = tmp_path / "plots/eda"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("kept")
    proc = run([sys.executable, str(ROOT / "stages/eda.py")], tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: params.yaml: generate.guidance_scal: unknown key; did you mean guidance_scale?"
    )
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_the_check_command(tmp_path: Path) -> None:
    """`python -m fashion.core.params_model check` (make check-params): params.yaml and each
    profile applied on it; a profile's bad key names the profile."""
    cmd = [sys.executable, "-m", "fashion.core.params_model", "check"]
    files = [str(ROOT / "params.yaml"), *map(str, PROFILES)]
    ok = subprocess.run([*cmd, *files], capture_output=True, text=True, cwd=ROOT / "stages")
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate:\n  guidance_scale: -1\n")
    proc = subprocess.run([*cmd, files[0], str(bad)], capture_output=True, text=True,
                          cwd=ROOT / "stages")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}: generate.guidance_scale: must be ≥ 0, got -1"
