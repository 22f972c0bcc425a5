"""base_inpaint: the inpainting base recorded once, so finetune_inpaint and redress follow it
and nothing else: a hub base's commit is resolved by this stage only (a later hub commit
keeps finetune_inpaint's checkpoints), the demo's base is finetune_sd's model as it is, and
in DVC a finetune_sd change re-runs finetune_inpaint and redress on the demo only."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from safetensors.torch import load_file, save_file

import base_inpaint
import finetune_inpaint
from conftest import ROOT, make_project_copy, run
from fashion.core.provenance import read_source
from fashion.core.stage import PipelineError
from fashion.inpaint import models
from fashion.inpaint.models import as_inpainting, base_pipeline, training_start
from fashion.inpaint.unet import inpainting_unet
from fashion.sd.models import load_finetuned_sd
from sd_testdata import update_sd_stage

HUB_ID = "someone/sd-inpainting"
COMMITS = ("a" * 40, "b" * 40)


def set_params(project: Path, section: str, **changed: object) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    if section in ("finetune_sd", "finetune_inpaint"):
        update_sd_stage(params, section, changed)
    else:
        params[section].update(changed)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_demo_base_is_finetune_sds_model_as_it_is(
    sd_finetuned_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same weights and scheduler redress and finetune_inpaint started from when they
    loaded models/sd themselves: the demo's images and fine-tune are unchanged."""
    project = tmp_path / "p"
    shutil.copytree(sd_finetuned_project, project)
    monkeypatch.chdir(project)
    base_inpaint.main()
    assert read_source("models/base_inpaint") == ("models/base_inpaint/pipeline", None)
    tuned = load_finetuned_sd("models/sd", "models/base_sd")
    base = base_pipeline("models/base_inpaint")
    assert base.unet.config.in_channels == 4  # zero-shot: known latents blended back
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(base, name), getattr(tuned, name))
    assert dict(base.scheduler.config) == dict(tuned.scheduler.config)
    assert base.tokenizer("a red dress").input_ids == tuned.tokenizer("a red dress").input_ids

    grown = training_start(*read_source("models/base_inpaint"), mode="full")
    assert_same_weights(grown.unet, inpainting_unet(tuned.unet))
    with pytest.raises(PipelineError, match="only mode: full trains"):
        training_start(*read_source("models/base_inpaint"), mode="lora")

    # a re-run on the same models/sd writes the same bytes: DVC keeps what follows
    before = {f: f.read_bytes() for f in Path("models/base_inpaint").rglob("*") if f.is_file()}
    base_inpaint.main()
    after = {f: f.read_bytes() for f in Path("models/base_inpaint").rglob("*") if f.is_file()}
    assert after == before


def test_a_hub_base_is_resolved_once_and_a_later_commit_keeps_the_checkpoints(
    sd_finetuned_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The hub (mocked: a commit id that moves, weights from a local folder) gets a new
    commit between a stopped finetune_inpaint and its resume: the resume loads and
    fingerprints the commit base_inpaint recorded, and never asks the hub again."""
    project = tmp_path / "p"
    shutil.copytree(sd_finetuned_project, project)
    monkeypatch.chdir(project)
    weights = tmp_path / "hub"
    tuned = load_finetuned_sd("models/sd", "models/base_sd")
    tuned.unet = inpainting_unet(tuned.unet)
    as_inpainting(tuned).save_pretrained(weights)

    hub = {"commit": COMMITS[0], "asked": 0}

    def model_info(self: Any, repo_id: str, revision: str | None = None, **_: Any) -> Any:
        hub["asked"] += 1
        assert repo_id == HUB_ID and revision is None
        return SimpleNamespace(sha=hub["commit"])

    loaded: list[tuple[str, str | None]] = []
    load_sd = models.load_sd

    def load_from_the_hub(pretrained: Any, revision: Any = None, *args: Any, **kw: Any) -> Any:
        if str(pretrained) != HUB_ID:
            return load_sd(pretrained, revision, *args, **kw)
        loaded.append((pretrained, revision))
        return load_sd(weights, None, *args, **kw)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(models, "load_sd", load_from_the_hub)
    set_params(project, "base_inpaint", pretrained=HUB_ID, revision=None)
    base_inpaint.main()
    assert hub["asked"] == 1
    assert read_source("models/base_inpaint") == (HUB_ID, COMMITS[0])

    hub["commit"] = COMMITS[1]  # the hub moves on; the run stops after 2 of 4 steps
    set_params(project, "finetune_inpaint", steps=2, schedule_steps=4)
    finetune_inpaint.main()
    set_params(project, "finetune_inpaint", steps=4)
    capsys.readouterr()
    AcceleratorState._reset_state(True)
    finetune_inpaint.main()
    assert "resumed from the step 2 checkpoint" in capsys.readouterr().out
    assert hub["asked"] == 1
    assert loaded == [(HUB_ID, COMMITS[0])] * 2
    assert read_source("models/inpaint") == (HUB_ID, COMMITS[0])


def test_bad_params_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = {"base_inpaint": {"pretrained": "finetuned_sd", "revision": "main"}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match="base_inpaint.revision must be null for finetuned_sd"):
        base_inpaint.main()
    Path("folder").mkdir()
    params["base_inpaint"] = {"pretrained": "folder", "revision": None}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match="pretrained folder: a folder without model_index"):
        base_inpaint.main()
    assert not Path("models/base_inpaint").exists()


def test_a_profile_with_the_old_keys_is_refused(tmp_path: Path) -> None:
    """finetune_inpaint.base and .revision moved to base_inpaint: a profile still setting
    them stops with the key named, instead of silently training from the default base."""
    params = str(tmp_path / "params.yaml")
    shutil.copy(ROOT / "params.yaml", params)
    script = str(ROOT / "scripts/use_profile.py")
    for old in ("finetune_inpaint.base", "finetune_inpaint.revision"):
        proc = run([sys.executable, script, f"{old}=x", "--params", params], tmp_path, check=False)
        assert proc.returncode == 1 and f"unknown parameter '{old}'" in proc.stderr
    new = "base_inpaint.pretrained=x"
    assert run([sys.executable, script, new, "--params", params], tmp_path).returncode == 0


# --- in DVC: what a finetune_sd change re-runs ---------------------------------------------

STAGES = ("finetune_sd", "base_inpaint", "finetune_inpaint", "redress")


def dvc(project: Path, *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], project).stdout


def status(project: Path) -> dict[str, Any]:
    return json.loads(dvc(project, "status", "--json", *STAGES))


def stand_ins(project: Path, stage: str, *extra: str) -> None:
    """A small file for each output of `stage` in dvc.yaml (and each `extra` path) that is
    not there yet: what `dvc commit` records in place of a run."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    paths = spec["vars"][0]["paths"]
    outputs = [
        next(iter(entry)) if isinstance(entry, dict) else entry
        for key in ("outs", "metrics", "plots")
        for entry in spec["stages"][stage].get(key, [])
    ]
    for name in [*outputs, *extra]:
        path = project / re.sub(r"\$\{paths\.(\w+)\}", lambda m: paths[m[1]], name)
        if path.exists():
            continue
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{stage} stand-in\n")
        else:
            path.mkdir(parents=True)
            (path / "stand-in").write_text(f"{stage} stand-in\n")


def locked_chain(project: Path) -> None:
    """finetune_sd, reshape, finetune_inpaint and redress recorded as run on stand-in
    outputs, base_inpaint run for real."""
    stand_ins(project, "finetune_sd", "data/subset/train.h5", "data/subset/test.h5")
    stand_ins(project, "finetune_sd", "models/base_sd")
    dvc(project, "commit", "--force", "finetune_sd")
    stand_ins(project, "reshape")
    dvc(project, "commit", "--force", "reshape")
    dvc(project, "repro", "--single-item", "base_inpaint")
    stand_ins(project, "finetune_inpaint")
    stand_ins(project, "redress")
    dvc(project, "commit", "--force", "finetune_inpaint", "redress")


def finetune_sd_reruns(project: Path, retrain: Any) -> None:
    """finetune_sd.steps changed, finetune_sd re-run (`retrain` writes its new models/sd),
    then base_inpaint re-run by DVC because models/sd changed."""
    run([sys.executable, "scripts/use_profile.py", "finetune_sd.steps=21"], project)
    assert set(status(project)) == {"finetune_sd"}
    retrain(project / "models/sd")
    dvc(project, "commit", "--force", "finetune_sd")
    assert "Running stage 'base_inpaint'" in dvc(project, "repro", "--single-item", "base_inpaint")


def test_a_finetune_sd_change_leaves_a_hub_based_redress_up_to_date(tmp_path: Path) -> None:
    """The smoke profile's base: a local inpainting pipeline (the stand-in for SD v1.5's)."""
    project = make_project_copy(tmp_path / "p")
    run(
        [sys.executable, "scripts/use_profile.py", "profiles/real.yaml", "profiles/smoke.yaml"],
        project,
    )
    base = (
        project
        / yaml.safe_load((project / "params.yaml").read_text())["base_inpaint"]["pretrained"]
    )
    base.mkdir(parents=True)
    (base / "model_index.json").write_text("{}\n")
    locked_chain(project)
    finetune_sd_reruns(project, lambda sd: (sd / "stand-in").write_text("retrained\n"))
    assert status(project) == {}  # finetune_inpaint and redress: not re-run
    assert read_source(project / "models/base_inpaint") == (str(base.relative_to(project)), None)


def test_a_finetune_sd_change_reruns_the_demo_based_redress(
    sd_finetuned_project: Path, tmp_path: Path
) -> None:
    """The demo's base (finetuned_sd) on a real tiny fine-tuned SD: its new weights reach
    finetune_inpaint and redress through models/base_inpaint."""
    project = make_project_copy(tmp_path / "p")
    for name in ("models/sd", "models/base_sd"):
        shutil.copytree(sd_finetuned_project / name, project / name)
    locked_chain(project)

    def retrain(sd: Path) -> None:
        unet = sd / "unet/diffusion_pytorch_model.safetensors"
        weights = load_file(unet)
        weights["conv_in.bias"] += 0.01
        save_file(weights, unet, metadata={"format": "pt"})

    finetune_sd_reruns(project, retrain)
    changed = status(project)
    assert set(changed) == {"finetune_inpaint", "redress"}
    for stage in changed.values():
        assert {"changed deps": {"models/base_inpaint": "modified"}} in stage
