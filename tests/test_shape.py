"""Redress v2's shape stage: the coarse body map, the v2 mask, IoU and the map rules against
hand-made maps; the shape model's training (resume, bf16) and the reshape stage's outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from fashion.metrics.shape import iou_block, rule_blocks
from fashion.shape.maps import (
    ARMS,
    BACKGROUND,
    FACE,
    HAIR,
    LEGS,
    LOWER,
    UPPER,
    MapRule,
    class_iou,
    coarse_maps,
    iou_counts,
    latent_maps,
    length_feature,
    redress_mask_v2,
    sleeve_feature,
)
from fashion.shape.model import ShapeConfig, ShapeNet, encode_captions, predict_maps, vocabulary
from fashion.shape.training import ShapeData, ShapeRun, train_shape

CAPTIONS = [
    "the lady wore a red long-sleeved dress.",
    "the man is wearing a blue short-sleeved tee.",
    "the lady was wearing a green sleeveless tank.",
    "the man wore a black long-sleeved coat.",
]


def figure(hem: int, sleeve_end: int, side: int = 16) -> np.ndarray:
    """A hand-drawn 16 px map: hair, face, an upper garment from row 5 to `hem`, arms below
    the sleeve's end (row `sleeve_end`) to row 11, legs below the hem."""
    m = np.zeros((side, side), np.uint8)
    m[1:3, 6:10] = HAIR
    m[3:5, 6:10] = FACE
    m[5 : hem + 1, 5:11] = UPPER
    m[5:12, 3:5] = UPPER
    m[5:12, 11:13] = UPPER
    m[sleeve_end:12, 3:5] = ARMS
    m[sleeve_end:12, 11:13] = ARMS
    m[hem + 1 : 15, 6:10] = LEGS
    return m


# --- the coarse map -----------------------------------------------------------------------


def test_the_coarse_map_merges_the_garments_into_one_body_class() -> None:
    seg = np.zeros((1, 4, 4), np.uint8)
    seg[0, 0, :2] = HAIR
    seg[0, 0, 2:] = FACE
    seg[0, 1] = [UPPER, LOWER, LEGS, ARMS]
    coarse = coarse_maps(seg, 2, "majority")
    assert coarse.shape == (1, 4, 2, 2)
    # top-left cell: 2 hair + 2 upper (body) pixels -> a tie, the lower class (hair) wins
    assert coarse[0, :, 0, 0].tolist() == [0, 1, 0, 0]
    # top-right: 2 face + 2 body (lower clothes, legs): a tie -> face
    assert coarse[0, :, 0, 1].tolist() == [0, 0, 1, 0]
    assert coarse[0, :, 1, 0].tolist() == [1, 0, 0, 0]  # background
    shares = coarse_maps(seg, 2, "shares")
    assert shares[0, :, 0, 0].tolist() == [0, 0.5, 0, 0.5]
    assert shares[0, :, 0, 1].tolist() == [0, 0, 0.5, 0.5]  # lower clothes and legs are body
    np.testing.assert_allclose(shares.sum(axis=1), 1)


def test_the_coarse_map_votes_per_cell_of_the_stated_size() -> None:
    seg = np.zeros((2, 16, 16), np.uint8)
    seg[0, 8:, 8:] = ARMS  # the bottom-right quarter
    seg[1, :3, :] = UPPER  # 3 of a 4-row cell: a majority for the top row of cells
    coarse = coarse_maps(seg, 4)
    assert coarse.shape == (2, 4, 4, 4)
    body = coarse[:, 3]
    assert body[0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert body[1, 0].tolist() == [1, 1, 1, 1] and body[1, 1:].sum() == 0
    with pytest.raises(ValueError, match="does not divide"):
        coarse_maps(seg, 5)


def test_latent_maps_hold_each_cells_class_shares() -> None:
    seg = np.zeros((1, 8, 8), np.uint8)
    seg[0, :4, :4] = UPPER
    seg[0, 0, 4] = HAIR
    small = latent_maps(seg, 2)
    assert small.shape == (1, 7, 2, 2)
    assert small[0, UPPER, 0, 0] == 1 and small[0, UPPER].sum() == 1
    assert small[0, HAIR, 0, 1] == pytest.approx(1 / 16)
    torch.testing.assert_close(small.sum(dim=1), torch.ones(1, 2, 2))


# --- the v2 mask --------------------------------------------------------------------------


def test_the_v2_mask_joins_both_garments_and_keeps_hair_and_face() -> None:
    source_map = figure(hem=9, sleeve_end=11)[None]
    source_mask = np.isin(source_map, [UPPER, LOWER, LEGS, ARMS])
    target_mask = np.zeros_like(source_mask)
    target_mask[0, 9:15, 4:12] = True  # a longer, wider dress
    target_mask[0, 2:4, 6:10] = True  # a target map whose garment reaches the source's head
    mask = redress_mask_v2(source_mask, source_map, target_mask)
    assert mask[source_mask & ~np.isin(source_map, [HAIR, FACE])].all()  # the source's garments
    assert mask[0, 9:15, 4:12].all()  # the target's room
    assert not mask[np.isin(source_map, [HAIR, FACE])].any()  # hair and face stay
    assert not mask[0, 15].any() and not mask[0, :, 0].any()  # nothing else


# --- IoU and the map rules ------------------------------------------------------------------


def test_iou_known_answers() -> None:
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2] = UPPER  # 8 pixels
    predicted = truth.copy()
    predicted[0, 2, :2] = UPPER  # 2 more: IoU 8 / 10 for upper clothes
    inter, union = iou_counts(predicted, truth)
    iou = class_iou(inter, union)
    assert iou[UPPER] == pytest.approx(0.8)
    # background: 24 truth pixels, 22 predicted, all inside: 22 / 24
    assert iou[BACKGROUND] == pytest.approx(22 / 24)
    assert np.isnan(iou[HAIR])  # in neither: left out of the mean
    block = iou_block(predicted, truth, seed=0)
    assert block["miou"] == pytest.approx((0.8 + 22 / 24) / 2)
    assert block["iou"]["hair"] is None and block["n"] == 2
    assert block["miou_ci95_low"] <= block["miou"] <= block["miou_ci95_high"]


def test_the_map_features_read_sleeves_and_garment_length() -> None:
    long_dress, tee = figure(hem=13, sleeve_end=11), figure(hem=8, sleeve_end=7)
    sleeveless = figure(hem=8, sleeve_end=5)
    sleeves = sleeve_feature(np.stack([long_dress, tee, sleeveless]))
    assert sleeves[0] < sleeves[1] < sleeves[2]
    # long sleeves: 4 arm pixels of 28 upper-clothes-or-arm pixels on the arm columns
    arms, upper = (long_dress == ARMS).sum(), (long_dress == UPPER).sum()
    assert sleeves[0] == pytest.approx(arms / (arms + upper))
    lengths = length_feature(np.stack([long_dress, tee]))
    # the person spans rows 1..14 (14 rows); the dress ends at row 13, the tee at row 8
    assert lengths.tolist() == pytest.approx([12 / 14, 7 / 14])
    real_dress = long_dress.copy()  # the benchmark's b_ labels a dress as lower clothes
    real_dress[5:14, 5:11][real_dress[5:14, 5:11] == UPPER] = LOWER
    assert length_feature(real_dress[None])[0] == pytest.approx(12 / 14)
    assert np.isnan(length_feature(np.zeros((1, 16, 16), np.uint8)))[0]


def test_a_map_rule_reads_the_target_when_nearer_its_median() -> None:
    dress, tee = figure(hem=13, sleeve_end=11), figure(hem=8, sleeve_end=11)
    maps = np.stack([dress, dress, tee, tee, tee])
    codes = np.array([16, 16, 13, 13, 13])  # dress, tee
    rule = MapRule.fit("category", maps, codes, margin=0.05)
    assert rule.medians == pytest.approx({16: 12 / 14, 13: 7 / 14})
    # redress a tee-wearer to a dress: a dress map hits, the unchanged tee map misses
    hits = rule.hits(np.stack([dress, tee]), np.array([13, 13]), np.array([16, 16]))
    assert hits.tolist() == [True, False]
    # a category without a median, or two categories too close, are not judged
    assert rule.judged(np.array([13, 13]), np.array([1, 13.0])).tolist() == [False, False]
    close = MapRule("category", {1: 0.5, 2: 0.52}, margin=0.05)
    assert not close.judged(np.array([1]), np.array([2]))[0]
    assert MapRule.from_json("category", rule.to_json()) == rule


def test_rule_blocks_count_only_the_changing_pairs() -> None:
    dress, tee = figure(hem=13, sleeve_end=11), figure(hem=8, sleeve_end=11)
    rules = {"category": MapRule("category", {16: 12 / 14, 13: 7 / 14}, 0.05)}
    source = {"category": np.array([13, 13, 16])}
    target = {"category": np.array([16, 16, 16])}  # the third keeps its category
    maps = {"predicted": np.stack([dress, tee, dress]), "source_map": np.stack([tee, tee, dress])}
    block = rule_blocks(rules, maps, source, target)["category"]
    assert block["pairs_changed"] == 2
    assert block["predicted_acc"] == 0.5 and block["predicted_acc_n"] == 2
    assert block["source_map_acc"] == 0.0


# --- the model and its training ----------------------------------------------------------


def tiny_config(captions: list[str]) -> ShapeConfig:
    return ShapeConfig(
        vocab=tuple(vocabulary(captions, 1)), coarse_size=4, work_size=16, width=8,
        text_dim=16, out_size=32,
    )  # fmt: skip


def tiny_data(n: int = 16) -> tuple[ShapeData, ShapeConfig]:
    maps = np.stack([figure(13 - 5 * (i % 2), 7 + 4 * (i % 2), 32) for i in range(n)])
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
    cfg = tiny_config(captions)
    data = ShapeData(
        torch.from_numpy(coarse_maps(maps, cfg.coarse_size)),
        encode_captions(captions, cfg),
        torch.from_numpy(maps[:, ::2, ::2].astype(np.int64)),
    )
    return data, cfg


def run_params(steps: int, **changed) -> ShapeRun:
    base = dict(
        steps=steps, schedule=8, batch_size=4, lr=0.01, warmup_steps=1, weight_decay=0.0,
        random_flip=True, eval_every=2, checkpoint_every=2, keep_checkpoints=4,
        checkpoint_mirror=None, seed=3,
    )  # fmt: skip
    return ShapeRun(**(base | changed))


def test_captions_become_word_ids() -> None:
    cfg = ShapeConfig(vocab=("the", "red", "long-sleeved"), max_words=5)
    ids = encode_captions(["The red long-sleeved dress.", ""], cfg)
    assert ids.tolist() == [[2, 3, 4, 1, 0], [0, 0, 0, 0, 0]]  # dress: unknown (1)


def test_the_sentence_changes_the_map_once_trained() -> None:
    """A model given the coarse map and the caption: the FiLM layers start as identity, so
    at first the caption changes nothing; training makes it matter."""
    data, cfg = tiny_data()
    torch.manual_seed(0)
    model = ShapeNet(cfg)
    coarse = data.coarse[:1].repeat(2, 1, 1, 1)
    with torch.no_grad():
        before = model(coarse, data.ids[:2])
    torch.testing.assert_close(before[0], before[1])
    optimizer = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(data.coarse, data.ids, 16), data.maps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = model(coarse, data.ids[:2])
    assert not torch.allclose(after[0], after[1])
    assert predict_maps(model, data.coarse[:3].numpy(), CAPTIONS[:3]).shape == (3, 32, 32)


def train(tmp_path: Path, run: ShapeRun, mixed_precision: str = "no", validate=None) -> ShapeNet:
    AcceleratorState._reset_state(True)
    data, cfg = tiny_data()
    torch.manual_seed(0)
    return train_shape(
        ShapeNet(cfg), data, run, Accelerator(mixed_precision=mixed_precision),
        {"params": "tiny"}, tmp_path / "checkpoints", tmp_path / "live", validate,
    )  # fmt: skip


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = weights(train(tmp_path / "straight", run_params(6)))
    train(tmp_path / "resumed", run_params(4))  # stopped after step 4's checkpoint
    assert (tmp_path / "resumed/checkpoints/step_0000004").is_dir()
    resumed = weights(train(tmp_path / "resumed", run_params(6)))
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, msg=name)
    curve = (tmp_path / "resumed/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in curve[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_bf16_training_and_validation(tmp_path: Path) -> None:
    seen = []

    def validate(model: ShapeNet) -> tuple[dict[str, float], np.ndarray]:
        data, _ = tiny_data(4)
        hook = model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        with torch.no_grad():
            model(data.coarse, data.ids)
        hook.remove()
        maps = predict_maps(model, data.coarse.numpy(), CAPTIONS)
        return {"val/miou": iou_block(maps, maps, 0)["miou"]}, np.zeros((4, 4, 3), np.uint8)

    model = train(tmp_path, run_params(2), "bf16", validate)
    assert seen == [torch.bfloat16]  # validation's convolutions ran under the autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert all(torch.isfinite(p).all() for p in model.parameters())
    metrics = json.loads((tmp_path / "live/metrics.json").read_text())
    assert metrics["val"]["miou"] == 1.0 and np.isfinite(metrics["train"]["loss"])


# --- the stage ----------------------------------------------------------------------------


def test_the_stage_writes_model_rules_metrics_and_grid(
    sd_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reshape

    project = tmp_path / "project"
    outputs = ("models", "metrics", "plots", "dvclive", "checkpoints")
    shutil.copytree(sd_base_project, project, ignore=shutil.ignore_patterns(*outputs))
    monkeypatch.chdir(project)
    params = yaml.safe_load(Path("params.yaml").read_text())
    assert params["reshape"]["steps"] <= 4  # the tiny project's
    AcceleratorState._reset_state(True)
    reshape.main()
    rules = json.loads(Path("models/shape/rules.json").read_text())
    assert set(rules) == {"sleeve", "category"}
    metrics = json.loads(Path("metrics/shape.json").read_text())
    assert metrics["split"] == "test"
    own = metrics["own_caption"]
    assert own["n"] == 8 and 0 <= own["miou"] <= 1 and len(own["iou"]) == 7
    for attribute in ("sleeve", "category"):
        block = metrics["changing_pairs"][attribute]
        assert block["predicted_acc_n"] == block["target_map_acc_n"] == block["source_map_acc_n"]
    assert Path("plots/shape/grid.png").is_file()
    assert list(Path("dvclive/reshape/plots/images/validation").glob("step-*.png"))


def test_the_jittered_coarse_map_widens_the_body_over_background_only() -> None:
    from fashion.shape.training import widened

    seg = np.zeros((1, 5, 5), np.uint8)
    seg[0, 0, 2] = HAIR
    seg[0, 0, 3] = UPPER  # beside the hair
    seg[0, 2, 2] = LEGS
    coarse = torch.from_numpy(coarse_maps(seg, 5))
    body = widened(coarse)[0, 3].int().tolist()
    assert body[2] == [0, 1, 1, 1, 0]  # one cell wider each side
    assert body[0] == [0, 0, 0, 1, 1]  # not over the hair
    assert widened(coarse)[0, 1, 0, 2] == 1  # the hair stays
    torch.testing.assert_close(widened(coarse).sum(dim=1), torch.ones(1, 5, 5))


def test_a_coarse_size_that_does_not_tile_the_maps_is_one_line() -> None:
    import reshape
    from fashion.core.stage import PipelineError

    # the rule that needs the data; the params model checks the rest (test_params_model)
    reshape.check_coarse_size({"coarse_size": 16}, 128)
    with pytest.raises(PipelineError, match="reshape.coarse_size: must divide the maps' 128 px"):
        reshape.check_coarse_size({"coarse_size": 5}, 128)
