"""generate: the fine-tuned weights are the ones used; prompts and manifest; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from PIL import Image
from safetensors.torch import load_file

import base_sd
import finetune_sd
import generate
from fashion.core.stage import PipelineError
from fashion.data.attributes import COLOR
from fashion.data.subset import read_table, sample_rows
from fashion.sd.models import load_finetuned_sd
from fashion.sd.prompts import build_prompts
from sd_testdata import make_sd_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_sd_project(
        tmp_path_factory.mktemp("gen") / "p",
        ROOT,
        overrides={"finetune_sd": {"steps": 3, "lr": 1e-2, "validation_prompts": []}},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        base_sd.main()
        AcceleratorState._reset_state(True)
        finetune_sd.main()
        generate.main()
    return project


def test_generation_uses_the_finetuned_unet(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(generated)
    saved = load_file("models/sd/unet/diffusion_pytorch_model.safetensors")
    loaded = load_finetuned_sd("models/sd", "models/base_sd").unet.state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    manifest = pd.read_csv("data/generated/manifest.csv")
    base, tuned = (
        manifest[manifest.model == m].reset_index(drop=True) for m in ("base", "finetuned")
    )
    assert base[["prompt", "seed"]].equals(tuned[["prompt", "seed"]])
    for a, b in zip(base.file, tuned.file, strict=True):  # same prompt and seed, other weights
        assert not np.array_equal(
            np.asarray(Image.open(f"data/generated/{a}")),
            np.asarray(Image.open(f"data/generated/{b}")),
        )


def test_manifest_and_grids(generated: Path) -> None:
    manifest = pd.read_csv(generated / "data/generated/manifest.csv")
    # 2 grid + 1 free-form + 2 matched, per model
    assert manifest.groupby("model").size().to_dict() == {"base": 5, "finetuned": 5}
    red = manifest[(manifest.source == "in_domain") & (manifest.color == 1)]
    assert len(red) == 2 and red.prompt.str.contains(" red ").all() and COLOR[1] == "red"
    assert manifest[manifest.source == "free_form"].color.isna().all()
    assert (manifest.seed.iloc[:5] == [0, 1, 2, 3, 4]).all()  # every image its own seed
    assert manifest.source.iloc[:5].tolist() == ["in_domain"] * 2 + ["free_form"] + ["matched"] * 2
    for model in ("base", "finetuned"):
        assert Image.open(generated / f"plots/generate/{model}_grid.png").size == (64, 64)


def test_matched_set_is_the_reference_sample_captions(generated: Path) -> None:
    """One image per sampled test image, from its caption, with its codes and row."""
    manifest = pd.read_csv(generated / "data/generated/manifest.csv")
    matched = manifest[(manifest.source == "matched") & (manifest.model == "base")]
    rows = sample_rows(8, 2, seed=0)  # reference.n_eval 2 of the 8 test images, seed 0
    assert matched.row.tolist() == rows.tolist()
    table = read_table(generated / "data/subset/test.h5").iloc[rows]
    assert matched.prompt.tolist() == table.caption.tolist()
    for attribute in ("gender", "color", "sleeve", "category"):
        assert matched[attribute].tolist() == table[attribute].tolist()
    assert manifest[manifest.source != "matched"].row.isna().all()


def test_prompt_errors_name_the_param() -> None:
    with pytest.raises(PipelineError, match="n_test_captions is gone"):
        build_prompts({"colors": ["red"], "n_test_captions": 4})
    with pytest.raises(PipelineError, match="unknown names"):
        build_prompts(
            {
                "genders": ["female"],
                "colors": ["rde"],
                "sleeves": ["sleeveless"],
                "categories": ["tee"],
            }
        )


def test_matched_set_larger_than_the_split_takes_it_all(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["reference"]["n_eval"] = 9
    params["generate"]["prompts"] = {"free_form": []}  # the matched set alone
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    with pytest.warns(UserWarning, match=r"reference.n_eval=9, but the test split holds 8"):
        generate.main()
    manifest = pd.read_csv("data/generated/manifest.csv")
    assert manifest[manifest.model == "base"].row.tolist() == list(range(8))
    params["reference"]["n_eval"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match=r"reference.n_eval: sample size 0"):
        generate.main()
    assert len(pd.read_csv("data/generated/manifest.csv")) == 16  # left as it was


def test_half_precision_weights_generate(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`precision` loads the weights in that dtype (bf16 here; fp16 on a GPU, where the CPU
    runs fp32), the fused fine-tuned weights included, and images still come out."""
    import shutil

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["precision"] = "bf16"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    dtypes = []
    for name in ("load_base_sd", "load_finetuned_sd"):
        load = getattr(generate, name)
        monkeypatch.setattr(
            generate,
            name,
            lambda *a, _load=load, **k: dtypes.append((pipe := _load(*a, **k)).unet.dtype) or pipe,
        )
    generate.main()
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    manifest = pd.read_csv("data/generated/manifest.csv")
    assert len(manifest) == 10
    assert generate.device_and_dtype("fp16")[1] == (
        torch.float16 if torch.cuda.is_available() else torch.float32
    )
    with pytest.raises(PipelineError, match="generate.precision"):
        generate.device_and_dtype("fp8")
