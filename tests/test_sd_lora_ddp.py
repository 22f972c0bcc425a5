"""finetune_sd: the LoRA path, and two CPU processes under `accelerate launch`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

import base_sd
import finetune_sd
from fashion.sd.models import LORA_WEIGHTS, load_base_sd, load_finetuned_sd
from sd_testdata import make_sd_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_sd_project(tmp_path_factory.mktemp("sd") / "p", ROOT, n_train=32)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        base_sd.main()
    return project


def test_lora_saves_adapters_that_change_the_unet(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    params = yaml.safe_load(Path("params.yaml").read_text())
    # text-encoder LoRA goes through transformers, which needs peft >= 0.22
    params["finetune_sd"].update(mode="lora", steps=2, lr=1e-2, train_text_encoder=False)
    params["sd_training"]["validation_prompts"] = []
    Path("params.yaml").write_text(yaml.safe_dump(params))
    AcceleratorState._reset_state(True)
    finetune_sd.main()
    # the adapters, and the scheduler that carries the fine-tune's prediction type
    assert sorted(p.name for p in Path("models/sd").iterdir()) == [LORA_WEIGHTS, "scheduler"]
    base = load_base_sd("models/base_sd")
    tuned = load_finetuned_sd("models/sd", "models/base_sd")
    diff = {
        n
        for (n, p), q in zip(tuned.unet.named_parameters(), base.unet.parameters(), strict=True)
        if not torch.equal(p, q)
    }
    assert diff and all("attn" in n for n in diff)  # only the adapted attention layers moved
    assert any("to_q" in n for n in diff)


def test_two_cpu_processes(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune_sd"].update(mode="full", steps=2, batch_size=4)
    params["sd_training"]["validation_prompts"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    launcher = Path(sys.executable).parent / "accelerate"
    env = dict(
        os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "stages")
    )
    proc = subprocess.run(
        [
            str(launcher),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(ROOT / "stages/finetune_sd.py"),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = yaml.safe_load((project / "dvclive/finetune_sd/params.yaml").read_text())
    assert logged["world_size"] == 2
    assert (project / "models/sd/model_index.json").is_file()
