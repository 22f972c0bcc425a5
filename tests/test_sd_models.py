"""The tiny base SD: tokenizer ids in the text config, VAE input range, crops, pooled text
conditioning, save/load by path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import base_sd
from fashion.core.stage import PipelineError
from fashion.sd.models import (
    balanced_weights,
    build_tiny_sd,
    load_base_sd,
    load_finetuned_sd,
    pretrain_vae,
    random_crops,
    to_vae_pixels,
)
from sd_testdata import TINY_SD_PARAMS, make_sd_project

ROOT = Path(__file__).resolve().parents[1]


def test_vae_pixels_are_in_minus_one_one() -> None:
    images = np.zeros((2, 128, 128, 3), np.uint8)
    images[1] = 255
    x = to_vae_pixels(images, 64)
    assert x.shape == (2, 3, 64, 64)
    assert x[0].max() == -1.0 and x[1].min() == 1.0  # black -> -1, white -> +1 (not [0, 1])


def test_tiny_base_loads_by_path(sd_base_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sd_base_project)
    source = json.loads(Path("models/base_sd/source.json").read_text())
    assert source["pretrained"] == "models/base_sd/pipeline"
    pipe = load_base_sd("models/base_sd")
    tok, cfg = pipe.tokenizer, pipe.text_encoder.config
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    ids = tok("the lady wore a red dress.").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert pipe.safety_checker is None
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.steps_offset == 1
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the pretrained VAE's latents


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_hub_source_is_recorded_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_sd_project(
        tmp_path / "p",
        ROOT,
        n_train=8,
        overrides={"base_sd": {"pretrained": "org/some-model", "revision": COMMIT}},
    )
    monkeypatch.chdir(project)
    base_sd.main()  # a commit hash needs no look-up (tests/test_hub.py: branches and tags)
    assert json.loads(Path("models/base_sd/source.json").read_text()) == {
        "pretrained": "org/some-model",
        "revision": COMMIT,
    }
    assert sorted(p.name for p in Path("models/base_sd").iterdir()) == ["source.json"]


def test_missing_finetuned_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="run finetune_sd"):
        load_finetuned_sd(tmp_path, tmp_path)


def test_random_crops_are_windows_of_each_image() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    crops = random_crops(x, 4, np.random.default_rng(0))
    assert crops.shape == (2, 3, 4, 4)
    for image, crop in zip(x, crops, strict=True):
        top, left = divmod(int(crop[0, 0, 0]) % 64, 8)  # the window's top-left pixel
        assert torch.equal(crop, image[:, top : top + 4, left : left + 4])


def test_vae_colour_settings_reach_the_model_and_the_loss() -> None:
    tiny = {**TINY_SD_PARAMS["base_sd"]["tiny"], "vae_norm_groups": 1}
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    first_losses = {}
    for chroma_weight in (0.0, 3.0):
        vae = build_tiny_sd(["a red dress"] * 4, tiny).vae  # the same seeded weights each time
        assert vae.config.norm_num_groups == 1
        assert all(m.num_groups == 1 for m in vae.modules() if isinstance(m, torch.nn.GroupNorm))
        losses = pretrain_vae(vae, images, 32, 1, 4, 0.0, 1e-6, 0, None, "l1", None, chroma_weight)
        first_losses[chroma_weight] = losses[0]
    # same weights and batch: the chroma term adds its (positive) error on coloured pixels
    assert first_losses[3.0] > first_losses[0.0] + 0.01


@pytest.mark.parametrize("pooled", [False, True])
def test_pooled_text_conditions_without_cross_attention(pooled: bool) -> None:
    """With `unet_pooled_text`, the caption reaches the UNet through the timestep embedding
    too: silencing every cross-attention leaves the prediction text-dependent."""
    tiny = {**TINY_SD_PARAMS["base_sd"]["tiny"], "unet_pooled_text": pooled}
    captions = ["the lady wore a red dress.", "the man wore a blue tee."]
    pipe = build_tiny_sd(captions * 4, tiny, seed=0)
    for name, module in pipe.unet.named_modules():
        if name.endswith("attn2.to_out.0"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    ids = pipe.tokenizer(captions, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
        latents = torch.randn(1, 4, 8, 8).expand(2, -1, -1, -1)
        out = pipe.unet(latents, torch.tensor([500, 500]), hidden).sample
    assert (pipe.unet.config.addition_embed_type == "text") is pooled
    assert (not torch.allclose(out[0], out[1])) is pooled


def test_unet_attention_has_unet_head_dim_channels_a_head() -> None:
    """diffusers' `attention_head_dim` counts heads; the param names a head's width."""
    tiny = {**TINY_SD_PARAMS["base_sd"]["tiny"], "unet_channels": [32, 64], "unet_head_dim": 16}
    pipe = build_tiny_sd(["the lady wore a red dress."] * 8, tiny, seed=0)
    attentions = [m for n, m in pipe.unet.named_modules() if n.endswith(("attn1", "attn2"))]
    assert attentions
    assert {(a.heads, a.inner_dim // a.heads) for a in attentions} == {(4, 16)}
    with pytest.raises(PipelineError, match=r"unet_head_dim must divide .* 64 channels, got 24"):
        build_tiny_sd(["a"] * 8, {**tiny, "unet_head_dim": 24}, seed=0)


def test_unknown_vae_loss_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_sd_project(
        tmp_path / "p", ROOT, n_train=8, overrides={"base_sd": {"vae_pretraining": {"loss": "l3"}}}
    )
    monkeypatch.chdir(project)
    with pytest.raises(PipelineError, match=r"params.yaml: base_sd.vae_pretraining.loss"):
        base_sd.main()
    assert not Path("models/base_sd").exists()  # nothing half-written


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("color_balance", -1, "must be ≥ 0, got -1"),
        ("chroma_weight", "high", "must be a number, got 'high'"),
        ("chroma_weight", float("nan"), "must be a finite number, got nan"),
        # fp16 training would need a scaler
        ("precision", "fp16", "must be one of 'bf16' or 'fp32', got 'fp16'"),
    ],
)
def test_bad_vae_pretraining_param_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: object, problem: str
) -> None:
    overrides = {"base_sd": {"vae_pretraining": {name: value}}}
    project = make_sd_project(tmp_path / "p", ROOT, n_train=8, overrides=overrides)
    monkeypatch.chdir(project)
    with pytest.raises(PipelineError, match=rf"vae_pretraining.{name}: {re.escape(problem)}$"):
        base_sd.main()
    assert not Path("models/base_sd").exists()


def test_one_precision_vocabulary_with_one_cpu_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A precision is the dtype it names on a GPU; auto is the training's mixed-precision
    dtype where there is one, else fp16 there. On the CPU half precision runs only where the
    CPU computes it (bf16 with its instructions; fp16 never), else fp32; auto is bf16 there
    without mixed precision."""
    from fashion.sd import precision

    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda native=native: native)
        on_cpu = bf16 if native else fp32
        expected_cpu = {"fp32": fp32, "bf16": on_cpu, "fp16": fp32, "auto": on_cpu}
        for name, dtype in expected_cpu.items():
            assert precision.compute_dtype(name, "cpu", "p") == dtype, (native, name)
            mixed = fp16 if name == "auto" else dtype  # accelerate's dtype, as the training's
            assert precision.compute_dtype(name, "cpu", "p", mixed=fp16) == mixed
        expected_gpu = {"fp32": fp32, "bf16": bf16, "fp16": fp16, "auto": fp16}
        for name, dtype in expected_gpu.items():
            assert precision.compute_dtype(name, "cuda:1", "p") == dtype
        assert precision.compute_dtype("auto", "cuda", "p", mixed=bf16) == bf16
        assert precision.compute_dtype("auto", "cuda", "p", mixed=fp32) == fp16
        assert precision.compute_dtype("fp32", "cuda", "p", mixed=bf16) == fp32
    with pytest.raises(PipelineError, match=r"^params.yaml: redress.precision: must be one of"):
        precision.compute_dtype("fp8", "cpu", "redress.precision")


def test_a_onednn_cap_below_bf16_means_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from fashion.sd import precision

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    hardware = precision.cpu_has_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # how bench/cpu_bf16.py emulates an old CPU
    assert not precision.cpu_has_bf16()
    for cap in ("avx512_core_amx", "AVX512_CORE_FP16"):  # caps at or above bf16: the hardware's
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert precision.cpu_has_bf16() == hardware


def test_vae_pretraining_in_bf16_keeps_fp32_weights_and_follows_fp32() -> None:
    """bf16 autocast runs the passes in bf16 (the losses differ from fp32's) while the
    weights and their updates stay fp32, and the losses follow fp32 training's closely."""
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    tiny = TINY_SD_PARAMS["base_sd"]["tiny"]
    losses, vaes = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        vaes[dtype] = vae = build_tiny_sd(["a red dress"] * 4, tiny).vae
        losses[dtype] = pretrain_vae(
            vae, images, 32, 4, 4, 1e-3, 1e-6, 0, None, "l1", chroma_weight=3.0, precision=dtype
        )
    np.testing.assert_allclose(losses[torch.bfloat16], losses[torch.float32], rtol=0.03)
    assert losses[torch.bfloat16] != losses[torch.float32]
    assert all(p.dtype == torch.float32 for p in vaes[torch.bfloat16].parameters())
    assert vaes[torch.bfloat16].config.scaling_factor > 0


def test_vae_colour_fidelity_is_written(sd_base_project: Path) -> None:
    colors = json.loads((sd_base_project / "models/base_sd/vae_colors.json").read_text())
    assert colors["n"] == 4  # the validation split of the tiny project: two products of two
    assert set(colors) == {"n", "color_acc_original", "color_acc_reconstructed"}


def test_vae_colours_of_a_perfect_round_trip_equal_the_originals() -> None:
    """A VAE that returns its input scores exactly what the judge scores on the originals;
    one that returns grey loses every colour the judge reads."""
    from types import SimpleNamespace

    from fashion.data.attributes import CATEGORY, SLEEVE
    from fashion.demo.drawing import draw_garments
    from fashion.metrics.garment_color import SOLID_CODES

    rng = np.random.default_rng(0)
    color = np.repeat(SOLID_CODES, 3)
    n = len(color)
    drawn, _ = draw_garments(
        rng.integers(0, 2, n), color, rng.choice(list(SLEEVE), n), rng.choice(list(CATEGORY), n),
        rng,
    )  # fmt: skip
    images = np.round(drawn * 255).astype(np.uint8)

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(sample=x)

    class Grey(Identity):
        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(sample=torch.zeros_like(x))

    same = base_sd.vae_colors(Identity(), images, color, 64)
    assert same["color_acc_reconstructed"] == same["color_acc_original"] > 0.8
    grey = base_sd.vae_colors(Grey(), images, color, 64)
    assert grey["color_acc_reconstructed"] <= 3 / n  # grey is one colour of the palette at most


def test_vae_pretraining_layout_changes_speed_not_results(tmp_path: Path) -> None:
    """NHWC (channels_last) training computes what NCHW does, and hands the VAE back in
    the default layout (so it saves and runs as any other)."""
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    tiny = TINY_SD_PARAMS["base_sd"]["tiny"]
    losses, vaes = {}, {}
    for channels_last in (False, True):
        vaes[channels_last] = vae = build_tiny_sd(["a red dress"] * 4, tiny).vae
        losses[channels_last] = pretrain_vae(
            vae, images, 32, 3, 4, 1e-3, 1e-6, 0, None, "l1", channels_last=channels_last
        )
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    # Adam's first steps move a weight by about lr whatever its gradient's size, so a
    # near-zero gradient whose sign the layouts' rounding flips moves it up to lr a step
    for a, b in zip(vaes[False].parameters(), vaes[True].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=3 * 1e-3)
    assert all(p.is_contiguous() for p in vaes[True].parameters())
    vaes[True].save_pretrained(tmp_path / "vae")


def test_balanced_weights_draw_rare_labels_more_often() -> None:
    labels = np.array([3, 3, 3, 7])
    np.testing.assert_allclose(balanced_weights(labels, 0.0), [1, 1, 1, 1])
    np.testing.assert_allclose(balanced_weights(labels, 1.0), [1 / 3, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(balanced_weights(labels, 0.5), [3**-0.5] * 3 + [1])


def test_vae_pretraining_draws_batches_by_the_sample_weights() -> None:
    """Weight on one image only: every batch is that image, as if it were all there is."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    tiny = TINY_SD_PARAMS["base_sd"]["tiny"]
    weights = np.array([0, 0, 1.0, 0, 0, 0])
    weighted = pretrain_vae(build_tiny_sd(["a dress"] * 4, tiny).vae, images, 32, 2, 4, 1e-3,
                            1e-6, 0, None, "l1", sample_weights=weights)  # fmt: skip
    only = pretrain_vae(build_tiny_sd(["a dress"] * 4, tiny).vae, images[[2] * 6], 32, 2, 4,
                        1e-3, 1e-6, 0, None, "l1")  # fmt: skip
    uniform = pretrain_vae(build_tiny_sd(["a dress"] * 4, tiny).vae, images, 32, 2, 4, 1e-3,
                           1e-6, 0, None, "l1")  # fmt: skip
    np.testing.assert_allclose(weighted, only, rtol=1e-5)
    assert abs(weighted[0] - uniform[0]) > 1e-4
