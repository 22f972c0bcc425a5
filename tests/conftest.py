"""Shared fixtures: a temp copy of the project in which the real DVC pipeline runs.

The tiny pipeline runs once per test session (`pipeline`), on small params, and many
tests read its outputs; tests that need a run of their own call `project_copy`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_ANNOTATIONS = ROOT.parent / "shared" / "deepfashion"
# Project files a DVC run needs (outputs, caches and environments are left behind).
COPIED = (
    "stages",
    "scripts",
    "profiles",
    "prompts",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
)

# Small sizes so the whole chain runs in a few minutes on 2 CPU cores.
SMALL_PARAMS: dict[str, Any] = {
    "demo": {"n_images": 320},
    "split": {"validation_images": 32},
    "finetune_clip": {
        "steps": 12,
        "batch_size": 32,
        "eval_every": 6,
        "checkpoint_every": 6,
    },
    "base_sd": {"vae_pretraining": {"steps": 6, "batch_size": 8}},
    "sd_training": {"validation_denoising_steps": 2},
    "finetune_sd": {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "eval_every": 3},
    "finetune_inpaint": {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "eval_every": 3},
    "reshape": {
        "steps": 4,
        "batch_size": 16,
        "width": 8,
        "text_dim": 16,
        "eval_every": 2,
        "checkpoint_every": 2,
    },
    "redress": {"n_images": 16, "denoising_steps": 3, "batch_size": 16},
    "generate": {
        "prompts": {
            "colors": ["red", "blue"],
            "sleeves": ["long-sleeved"],
            "categories": ["tee", "dress"],
            "free_form": ["a red dress"],
        },
        "denoising_steps": 3,
        "batch_size": 16,
    },
    "reference": {"n_images": "all"},
    # hermetic: no download of the Inception weights from a test run (auto's paths are
    # tested with the download faked: test_image_metrics)
    "evaluate": {"kid_subsets": 5, "skip_inception": True},
}


def deep_update(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, as the profiles are (`fashion.core.params.merged`)."""
    from fashion.core.params import merged

    return merged(base, overrides)


def run(
    cmd: list[str], cwd: Path, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's environment first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}"
            f"\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def make_project_copy(dest: Path, params: Mapping[str, Any] | None = None) -> Path:
    """Copy the project into `dest` as a fresh git + DVC repo, with `params` merged in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if params:
        path = dest / "params.yaml"
        merged = deep_update(yaml.safe_load(path.read_text()), params)
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


@pytest.fixture(autouse=True)
def fresh_accelerator_state() -> None:
    """Each test starts without accelerate's process-wide state, a singleton that would
    carry an earlier test's mixed precision into this one's stages (fixtures of a wider
    scope run before this: they reset it themselves)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)


class Fp16Record:
    """What `fp16_like_a_gpu` saw: the models accelerate prepared, and the linear and conv
    layers that computed in fp16 from fp32 weights with gradients on (the autocast's doing:
    a layer cast to fp16, as frozen weights are, is not counted)."""

    def __init__(self) -> None:
        self.prepared: list[torch.nn.Module] = []
        self.autocast_layers: set[int] = set()

    def autocast_reached_every_trained_model(self) -> bool:
        trained = [m for m in self.prepared if any(p.requires_grad for p in m.parameters())]
        return bool(trained) and all(
            any(id(layer) in self.autocast_layers for layer in model.modules()) for model in trained
        )


@pytest.fixture
def fp16_like_a_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fp16Record]:
    """`--mixed_precision fp16` (a T4 in Colab) as a GPU runs it, on the CPU: accelerate
    ignores fp16 on a CPU, so this turns on what it does on a GPU: fp16 autocast around the
    prepared models' forward and a grad scaler driving backward and the optimiser step
    (saved with every checkpoint)."""
    import accelerate
    import torch
    from accelerate.state import AcceleratorState

    record = Fp16Record()
    init, prepare_model = accelerate.Accelerator.__init__, accelerate.Accelerator.prepare_model

    def init_as_on_a_gpu(self: accelerate.Accelerator, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self.mixed_precision == "fp16":
            self.native_amp = True
            self.scaler = torch.amp.GradScaler("cpu")

    def recording_prepare_model(
        self: accelerate.Accelerator, model: torch.nn.Module, *args: Any, **kwargs: Any
    ) -> torch.nn.Module:
        record.prepared.append(model)
        return prepare_model(self, model, *args, **kwargs)

    def on_forward(module: torch.nn.Module, _: Any, output: Any) -> None:
        if (
            torch.is_grad_enabled()
            and isinstance(module, torch.nn.Linear | torch.nn.Conv2d)
            and module.weight.dtype == torch.float32
            and output.dtype == torch.float16
        ):
            record.autocast_layers.add(id(module))

    monkeypatch.setattr(accelerate.Accelerator, "__init__", init_as_on_a_gpu)
    monkeypatch.setattr(accelerate.Accelerator, "prepare_model", recording_prepare_model)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    hook = torch.nn.modules.module.register_module_forward_hook(on_forward)
    yield record
    hook.remove()
    AcceleratorState._reset_state(True)  # not fp16 for fixtures built after this test


@pytest.fixture
def project_copy(tmp_path: Path):
    """Factory: a fresh project copy with optional param overrides (on top of SMALL_PARAMS)."""

    def factory(params: Mapping[str, Any] | None = None, name: str = "project") -> Path:
        merged = deep_update(yaml.safe_load(yaml.safe_dump(SMALL_PARAMS)), params or {})
        return make_project_copy(tmp_path / name, merged)

    return factory


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole tiny pipeline, run once per session with `dvc repro` in a project copy."""
    project = make_project_copy(tmp_path_factory.mktemp("pipeline") / "project", SMALL_PARAMS)
    run(["dvc", "repro"], project, timeout=1800)
    return project


@pytest.fixture(scope="session")
def sd_base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A drawn subset, the tiny base SD the `base_sd` stage builds from it and the tiny shape
    model of `reshape` (read-only)."""
    from accelerate.state import AcceleratorState

    import base_sd
    import reshape
    from sd_testdata import make_sd_project

    project = make_sd_project(tmp_path_factory.mktemp("sd") / "base", ROOT)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        base_sd.main()
        AcceleratorState._reset_state(True)
        reshape.main()
    return project


@pytest.fixture(scope="session")
def real_annotations() -> Path:
    """The real annotation files of the benchmark, or a skip where they are absent."""
    if not (SHARED_ANNOTATIONS / "language_original.mat").is_file():
        pytest.skip(f"real annotations not found at {SHARED_ANNOTATIONS}")
    return SHARED_ANNOTATIONS


def run_stage_in_copy(source: Path, dest: Path, stage: Any) -> Path:
    """A copy of the project `source` at `dest` with `stage.main()` run in it."""
    from accelerate.state import AcceleratorState

    shutil.copytree(source, dest)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(dest)
        AcceleratorState._reset_state(True)
        stage.main()
    return dest


@pytest.fixture(scope="session")
def sd_finetuned_project(sd_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sd_base_project` with finetune_sd run (models/sd), read-only."""
    import finetune_sd

    return run_stage_in_copy(
        sd_base_project, tmp_path_factory.mktemp("sd") / "finetuned", finetune_sd
    )


@pytest.fixture(scope="session")
def inpaint_project(sd_finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sd_finetuned_project` with finetune_inpaint run (models/inpaint), read-only."""
    import finetune_inpaint

    return run_stage_in_copy(
        sd_finetuned_project, tmp_path_factory.mktemp("inpaint") / "trained", finetune_inpaint
    )
