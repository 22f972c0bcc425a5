"""params.yaml as a typed interface (`fashion.core.params_model`): each class of bad value
stops a stage before it reads anything, in one line naming the key, with exit 1 and its
outputs untouched; every shipped profile validates; the schema file is the model's."""

from __future__ import annotations

import json
import shutil
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
    ("finetune_sd", "caption_dropout", 1.0, "must be < 1, got 1.0"),
    ("sd_training", "ema", "yes", "must be true or false, got 'yes'"),
    ("sd_training", "resolution", 60, "must be a multiple of 8, got 60"),
    (
        "finetune_sd",
        "ema",
        True,
        "also in sd_training, which finetune_sd reads: set it in one place",
    ),
    ("sd_training", "map_dropout", 0.1, "unknown key"),
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
        "sd_training",
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


# rules between keys: (changes, the one line after "params.yaml: ")
CROSS = [
    (
        {"finetune_sd.steps": None, "finetune_sd.epochs": None},
        "finetune_sd.steps: set steps, epochs or both (both are null)",
    ),
    (
        {"reshape.schedule_steps": 10},
        "reshape.schedule_steps: must be ≥ reshape.steps (800), got 10",
    ),
    (
        {"finetune_clip.saved_weights": "best_val_r1", "split.validation_images": 0},
        "finetune_clip.saved_weights: best_val_r1 needs a validation split",
    ),
    (
        {"prepare.n_train_images": 100, "split.validation_images": 200},
        "split.validation_images: must be smaller than prepare.n_train_images (100)",
    ),
    (
        {"base_sd.tiny.vae_channels": [8, 8, 8, 8, 8], "base_sd.tiny.resolution": 72},
        "base_sd.tiny.resolution: must be a multiple of the VAE's factor 16",
    ),
    (
        {"base_sd.tiny.unet_head_dim": 48},
        "base_sd.tiny.unet_head_dim: must divide the attention level's 128 channels",
    ),
    (
        {"base_clip.tiny.vision_heads": 3},
        "base_clip.tiny.vision_heads: must divide base_clip.tiny.vision_width",
    ),
]


@pytest.mark.parametrize(("changes", "message"), CROSS, ids=[m.split(":")[0] for _, m in CROSS])
def test_a_broken_rule_between_keys_is_one_line_naming_a_key(changes, message) -> None:
    params = shipped()
    for dotted, value in changes.items():
        section, *path = dotted.split(".")
        params = merged(params, {section: _nested(path, value)})
    with pytest.raises(ParamsError) as err:
        check_params(params)
    assert str(err.value).startswith(f"params.yaml: {message}")
    assert "\n" not in str(err.value)
    check_params(shipped())  # the shipped values keep every rule


def _nested(path: list[str], value: Any) -> Any:
    return value if not path else {path[0]: _nested(path[1:], value)}


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


def stale_stages(project: Path, section: str, key: str, value: Any) -> set[str]:
    """The stages `dvc status` finds changed once `section.key` is `value` (then put back)."""
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params[section][key] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(json.loads(run(["dvc", "status", "--json"], project).stdout))
    finally:
        params_file.write_text(original)


def test_the_shared_sd_recipe_re_runs_both_sd_stages_and_a_stage_s_own_key_only_it(
    pipeline: Path, tmp_path: Path
) -> None:
    """sd_training is written once and DVC tracks it for both SD fine-tuners; a key one
    stage reads alone (in its own section) never makes the other stale."""
    project = tmp_path / "project"
    shutil.copytree(pipeline, project, symlinks=True)
    assert stale_stages(project, "sd_training", "ema_decay", 0.5) == {
        "finetune_sd", "finetune_inpaint",
    }  # fmt: skip
    assert stale_stages(project, "finetune_sd", "eval_every", 7) == {"finetune_sd"}
    assert stale_stages(project, "finetune_inpaint", "map_dropout", 0.3) == {"finetune_inpaint"}
    assert stale_stages(project, "generate", "guidance_scale", 5.0) == {"generate"}


def test_bad_values_through_dvc_exp_run_are_one_line_and_touch_nothing(
    pipeline: Path, tmp_path: Path
) -> None:
    """Through `dvc exp run -S`: DVC itself refuses a key params.yaml lacks (unless `+key`
    appends it); an appended misspelt key reaches the stage, which stops before reading
    anything with its one line (a bad value takes the same path). DVC clears a stage's
    outputs before running it: nothing half-written is left, and `dvc checkout` brings the
    last ones back."""
    project = tmp_path / "project"
    shutil.copytree(pipeline, project, symlinks=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "add", "-A"], project)
    run([*git, "commit", "-qm", "finished run"], project)  # exp run starts from a commit
    manifest = project / "data/generated/manifest.csv"
    before = manifest.read_bytes()
    cases = {
        "generate.guidance_scal=9.0": "Could not override 'generate.guidance_scal'",
        "+generate.guidance_scal=9.0": (
            "params.yaml: generate.guidance_scal: unknown key; did you mean guidance_scale?"
        ),
    }
    for setting, message in cases.items():
        proc = run(["dvc", "exp", "run", "-S", setting], project, check=False)
        printed = proc.stdout + proc.stderr
        assert proc.returncode != 0, setting
        assert message in printed, printed
        assert "Traceback" not in printed
        assert not (project / "data/generated.partial").exists()  # no batch was sampled
        run(["git", "checkout", "--", "params.yaml"], project)
        run(["dvc", "checkout", "generate"], project)
        assert manifest.read_bytes() == before
