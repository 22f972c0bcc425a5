"""redress and evaluate_redress on the tiny inpainting project (tests/conftest.py): the
official pairs sampled from one half of the test split, outputs identical to the inputs
outside the mask, the fine-tuned weights the ones used, and the metrics' blocks; the
metric functions on known answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import evaluate_redress
import redress
from fashion.clip.models import build_tiny_clip
from fashion.core.environment import LIBRARIES
from fashion.core.provenance import write_source
from fashion.data.pairs import redress_rows, validation_pairs
from fashion.data.splits import evaluated_split
from fashion.data.subset import read_images, read_segmentation, read_table
from fashion.inpaint.masks import redress_masks
from fashion.inpaint.redress import sample_pairs
from fashion.inpaint.unet import MapConditionedUNet
from fashion.metrics.intervals import wilson
from fashion.metrics.redress import outside_mask_difference, transfer_blocks, transfer_hits
from test_generate import images_of
from test_image_metrics import TINY
from test_inpaint_training import trained_project

MODELS = ("finetuned", "base")

TEST = Path("data/subset/test.h5")


@pytest.fixture(scope="module")
def inpaint_project(sd_finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fine-tuned inpainting project, base_inpaint's output included (read-only)."""
    return trained_project(sd_finetuned_project, tmp_path_factory)


def add_tiny_clips(project: Path) -> None:
    """Two tiny CLIPs on the project's train captions as its base and fine-tuned CLIP (the
    judges of evaluate_redress and evaluate)."""
    captions = read_table(project / "data/subset/train.h5")["caption"].tolist()
    for folder, seed in (("base_clip", 0), ("clip", 1)):
        model, processor = build_tiny_clip(captions, TINY, seed=seed)
        model.save_pretrained(project / "models" / folder)
        processor.save_pretrained(project / "models" / folder)
    write_source(project / "models/base_clip", "models/base_clip")


@pytest.fixture(scope="module")
def redressed(inpaint_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("redress") / "p"
    shutil.copytree(inpaint_project, project)
    add_tiny_clips(project)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        redress.main()
        evaluate_redress.main()
    return project


def test_pairs_come_from_one_half_and_keep_their_targets(
    redressed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(redressed)
    manifest = pd.read_csv("data/redressed/manifest.csv")
    base, tuned = (manifest[manifest.model == m].reset_index(drop=True) for m in redress.MODELS)
    columns = ["pair", "seed", "source_row", "target_row", "target_caption"]
    assert base[columns].equals(tuned[columns])  # the same pairs and seeds for both models
    source, target = redress_rows(TEST)
    pairs = dict(zip(source.tolist(), target.tolist(), strict=True))
    assert all(pairs[s] == t for s, t in zip(base.source_row, base.target_row, strict=True))
    reference = pd.read_csv("data/redressed/reference.csv")["row"].tolist()
    assert len(base) == 8  # n_images all: every pair of the 8 test images
    scored = base.source_row[base.realism]
    assert not set(reference) & set(scored)  # realism never meets its own source
    assert len(reference) == len(scored) == 4
    captions = read_table(TEST)["caption"]
    assert base.target_caption.tolist() == captions.iloc[base.target_row].tolist()
    grid = Image.open("plots/redress/grid.png")
    # input | sentence | target map (v2) | base | fine-tuned
    assert grid.size == (5 * 128, 20 + 3 * 128)


def test_outside_the_mask_the_output_is_the_input(
    redressed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(redressed)
    manifest = pd.read_csv("data/redressed/manifest.csv")
    params = evaluate_redress.load_params()["redress"]
    assert params["version"] == "v2"
    with np.load("data/redressed/inputs.npz") as inputs:
        masks = inputs["masks"]
    for model in redress.MODELS:
        rows = manifest[manifest.model == model].sort_values("pair")
        sources = read_images(TEST, rows.source_row.to_numpy())
        segmentation = read_segmentation(TEST, rows.source_row.to_numpy())
        v1 = redress_masks(segmentation, params) & ~np.isin(segmentation, [1, 2])
        assert (masks | v1 == masks).all()  # v2 redraws the source's garments, not hair or face
        out = np.stack([np.asarray(Image.open(f"data/redressed/{f}")) for f in rows.file])
        assert (out[~masks] == sources[~masks]).all()
        assert (out[masks] != sources[masks]).any()  # and the garment region is redrawn
    metrics = json.loads(Path("metrics/redress.json").read_text())
    assert metrics["base"]["max_abs_diff_outside_mask"] == 0
    assert metrics["finetuned"]["max_abs_diff_outside_mask"] == 0


def test_redress_uses_the_finetuned_weights(
    inpaint_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "p"
    shutil.copytree(inpaint_project, project)
    monkeypatch.chdir(project)
    unets = []
    run = redress.redress_images
    monkeypatch.setattr(
        redress, "redress_images", lambda pipe, *a: unets.append(pipe.unet) or run(pipe, *a)
    )
    redress.main()
    base, tuned = unets
    assert base.config.in_channels == 4  # zero-shot: the text-to-image UNet, known latents blended
    saved = load_file("models/inpaint/unet/diffusion_pytorch_model.safetensors")
    assert isinstance(tuned, MapConditionedUNet) and tuned.config.in_channels == 9
    tuned = tuned.unet  # v2: 9 channels and the map's 7
    loaded = tuned.state_dict()
    assert tuned.config.in_channels == 16 and saved.keys() == loaded.keys()
    for name, tensor in saved.items():  # in the weight dtype of redress.precision here
        assert torch.equal(loaded[name], tensor.to(loaded[name].dtype)), name


def test_metrics_hold_every_block(redressed: Path) -> None:
    metrics = json.loads((redressed / "metrics/redress.json").read_text())
    assert metrics["n_pairs"] == 8
    assert set(metrics["environment"]["versions"]) == {*LIBRARIES, "python"}
    assert metrics["realism"] == {"n_redressed": 4, "n_reference": 4, "inception": "skipped"}
    for name in ("base", "finetuned", "ceiling"):
        block = metrics[name]
        assert set(block["attr"]) == {"finetuned_clip", "base_clip", "pixel"}
        assert set(block["attr"]["finetuned_clip"]) == {"color", "sleeve", "category"}
        assert block["fid"] is None and block["kid"] is None  # skip_inception: never random
        for attribute in block["attr"]["finetuned_clip"].values():
            assert attribute["changed"]["n"] + attribute["unchanged"]["n"] <= 8
            assert attribute["changed"]["target_acc_n"] == attribute["changed"]["n"]
    assert "max_abs_diff_outside_mask" not in metrics["ceiling"]
    # fine-tuned - base on the same changing pairs, inside its paired interval
    gains = metrics["finetuned_minus_base"]["attr"]
    for judge, by_attribute in gains.items():
        for attribute, gain in by_attribute.items():
            tuned, base = (metrics[m]["attr"][judge][attribute]["changed"] for m in MODELS)
            assert gain["target_acc_n"] == tuned["n"] == base["n"]
            if tuned["n"]:
                assert gain["target_acc"] == pytest.approx(tuned["target_acc"] - base["target_acc"])
                assert gain["target_acc_ci95_low"] <= gain["target_acc"]
                assert gain["target_acc"] <= gain["target_acc_ci95_high"]


def test_transfer_known_answer() -> None:
    source = np.array([1, 1, 2, 2, 3, 3])
    target = np.array([2, 2, 2, 2, 1, 5])
    predicted = np.array([2, 1, 2, 9, 1, 3])
    counted = np.array([True, True, True, True, True, False])
    out = transfer_blocks(transfer_hits(predicted, source, target, counted))
    # changed and counted: pairs 0, 1, 4; hit target in 0 and 4, source in 1
    changed, unchanged = out["changed"], out["unchanged"]
    assert (changed["n"], changed["target_acc"], changed["source_leak"]) == (3, 2 / 3, 1 / 3)
    assert (unchanged["n"], unchanged["kept"]) == (2, 0.5)  # pairs 2 (kept) and 3 (not)
    # each share with its n and Wilson interval
    assert changed["target_acc_n"] == 3 and unchanged["kept_n"] == 2
    assert (changed["target_acc_ci95_low"], changed["target_acc_ci95_high"]) == wilson(2, 3)
    assert (unchanged["kept_ci95_low"], unchanged["kept_ci95_high"]) == wilson(1, 2)
    none = transfer_blocks(transfer_hits(predicted, source, target, np.zeros(6, bool)))
    assert none["changed"]["target_acc"] is None and none["unchanged"]["n"] == 0


def test_sample_pairs_and_the_outside_difference() -> None:
    source, target = np.arange(10), (np.arange(10) + 3) % 10
    sample = sample_pairs(source, target, np.arange(10), "all", seed=0)
    assert len(sample.source) == 10 and sample.realism.sum() == 5 and len(sample.reference) == 5
    assert not set(sample.source[sample.realism]) & set(sample.reference)
    np.testing.assert_array_equal(sample.target, (sample.source + 3) % 10)
    again = sample_pairs(source, target, np.arange(10), 3, seed=0)
    assert len(again.source) == 3 and np.all(np.diff(again.source) > 0)
    np.testing.assert_array_equal(again.reference, sample.reference)  # halves: seed only
    with pytest.warns(UserWarning, match="redress.n_images=12, but the evaluated split holds 10"):
        sample_pairs(source, target, np.arange(10), 12, seed=0)
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 200
    b[0, 3, 3] = 7
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 0, 0] = True
    assert outside_mask_difference(b, a, mask) == 7


def test_validation_split_pairs_its_own_images(
    inpaint_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`split.evaluate: validation`: seeded pairs of validation images (for choosing
    defaults), read from train.h5; every image a source once and a target once."""
    rows = np.array([3, 5, 8, 13])
    source, target = validation_pairs(rows, seed=0)
    np.testing.assert_array_equal(source, rows)
    assert sorted(target) == sorted(rows) and not np.any(source == target)
    project = tmp_path / "p"
    shutil.copytree(inpaint_project, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["evaluate"] = "validation"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(project)
    redress.main()
    manifest = pd.read_csv("data/redressed/manifest.csv")
    assert set(manifest.split) == {"validation"}
    validation = evaluated_split(params, "data/subset").rows
    assert set(manifest.source_row) == set(validation) == set(manifest.target_row)
    table = read_table("data/subset/train.h5")
    tuned = manifest[manifest.model == "finetuned"]
    assert tuned.target_caption.tolist() == table.caption.iloc[tuned.target_row].tolist()


def test_a_stopped_run_samples_only_the_batches_it_had_not_finished(
    inpaint_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A redress run that stops midway (the 3rd batch raises, as a lost VM would) keeps its
    finished batches; the next samples only the rest, with an uninterrupted run's images."""
    from fashion.sd.sampling import FinishedBatches

    project = tmp_path / "p"
    shutil.copytree(inpaint_project, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["redress"]["batch_size"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    redress.main()
    n = len(pd.read_csv("data/redressed/manifest.csv"))
    batches = 2 * -(-n // 4)  # both models
    straight = images_of(Path("data/redressed"))

    calls, stop, batch = [], True, FinishedBatches.batch

    def stopping(self, name, start, sample):
        def counted():
            calls.append(1)
            if stop and len(calls) == 3:
                raise RuntimeError("the VM is gone")
            return sample()

        return batch(self, name, start, counted)

    monkeypatch.setattr(FinishedBatches, "batch", stopping)
    with pytest.raises(RuntimeError, match="the VM is gone"):
        redress.main()
    assert len(list(Path("data/redressed.partial").rglob("*.npy"))) == 2
    stop, calls[:] = False, []
    capsys.readouterr()
    redress.main()
    assert len(calls) == batches - 2
    assert "2 batches read back" in capsys.readouterr().out
    resumed = images_of(Path("data/redressed"))
    assert resumed.keys() == straight.keys() and len(straight) == n
    for name, image in straight.items():
        np.testing.assert_array_equal(resumed[name], image, err_msg=name)
    assert not Path("data/redressed.partial").exists()
