"""Known answers, computed in the test, for the losses and scores of the pipeline.

Each expected value is worked out here by hand on tiny inputs or by a formula written out in
plain numpy / torch (CLIP's loss, the min-SNR weights of diffusers' text-to-image script,
diffusers' EMA decay, torchmetrics' Inception Score), never by calling the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr
from safetensors.torch import load_file
from torch import nn

from fashion.clip.training import caption_targets, contrastive_loss
from fashion.metrics.image import clip_score, inception_score
from fashion.sd.config import TrainConfig
from fashion.sd.diffusion import diffusion_loss
from fashion.sd.models import SD15_SCHEDULER, build_tiny_sd
from fashion.sd.training import FineTuner, TrainData
from sd_testdata import TINY_SD_PARAMS

# --- CLIP: caption-level targets and the symmetric contrastive loss ----------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def reference_contrastive(logits: np.ndarray, caption_ids: list[int]) -> float:
    """Mean of the image->text (rows) and text->image (columns) soft cross-entropies, each row's
    target spread evenly over the items with its caption."""
    ids = np.asarray(caption_ids)
    same = (ids[:, None] == ids[None, :]).astype(np.float64)
    targets = same / same.sum(axis=1, keepdims=True)
    image_to_text = -(targets * _log_softmax(logits)).sum(axis=1).mean()
    text_to_image = -(targets * _log_softmax(logits.T)).sum(axis=1).mean()
    return float((image_to_text + text_to_image) / 2)


def test_caption_targets_spread_over_every_item_with_the_same_caption() -> None:
    got = caption_targets(torch.tensor([7, 3, 7, 7]))
    third = 1 / 3
    expected = torch.tensor(
        [
            [third, 0.0, third, third],
            [0.0, 1.0, 0.0, 0.0],
            [third, 0.0, third, third],
            [third, 0.0, third, third],
        ]
    )
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(caption_targets(torch.tensor([0, 1, 2])), torch.eye(3))


def test_contrastive_loss_closed_forms_on_two_items() -> None:
    a = 3.0
    logits = torch.tensor([[a, 0.0], [0.0, a]])
    # distinct captions: -log(e^a / (e^a + 1)) in every row, both directions
    distinct = contrastive_loss(logits, torch.tensor([0, 1]))
    assert float(distinct) == pytest.approx(math.log1p(math.exp(-a)), rel=1e-6)
    # one caption twice: half the target on each item, -(a/2) + log(e^a + 1) per row
    repeated = contrastive_loss(logits, torch.tensor([5, 5]))
    assert float(repeated) == pytest.approx(math.log1p(math.exp(a)) - a / 2, rel=1e-6)


def test_contrastive_loss_with_distinct_captions_is_clips_loss() -> None:
    # asymmetric, so the image->text and text->image halves differ
    logits = torch.tensor([[4.0, 1.0, -2.0], [0.5, 3.0, 2.5], [3.0, -1.0, 1.0]])
    labels = torch.arange(3)
    # CLIPModel's loss: the mean of the cross-entropies of the rows and of the columns
    clip = (
        nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    got = contrastive_loss(logits, torch.tensor([10, 11, 12]))
    assert float(got) == pytest.approx(float(clip), rel=1e-6)
    assert float(got) == pytest.approx(
        reference_contrastive(logits.numpy(), [10, 11, 12]), rel=1e-6
    )
    # not one direction alone: the halves are 0.906 and 0.730
    for half in (logits, logits.T):
        assert abs(float(got) - float(nn.functional.cross_entropy(half, labels))) > 0.05


def test_contrastive_loss_with_repeated_captions_on_a_hand_built_4x4() -> None:
    # items 0 and 2 share a caption; asymmetric logits so both directions matter. The
    # shared caption raises each direction by (L00 + L22 - L02 - L20) / 8 (the softmax
    # normalisers cancel), so that sum must not be 0: here 5 + 2 - 1 - 3 = 3, i.e. 0.375.
    logits = torch.tensor(
        [
            [5.0, 0.0, 1.0, -1.0],
            [1.0, 3.0, 0.0, 2.0],
            [3.0, -2.0, 2.0, 0.5],
            [0.0, 1.5, -0.5, 4.0],
        ]
    )
    ids = [0, 1, 0, 2]
    expected = reference_contrastive(logits.numpy().astype(np.float64), ids)
    got = contrastive_loss(logits, torch.tensor(ids))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # the shared caption changes the answer (+0.375): not the one-positive-per-row loss
    assert abs(expected - reference_contrastive(logits.numpy(), [0, 1, 3, 2])) > 0.1


# --- SD: the denoising loss's target and min-SNR weights ---------------------------------


class FixedPrediction(nn.Module):
    """UNet stand-in: records its inputs and predicts a fixed tensor."""

    def __init__(self, prediction: torch.Tensor) -> None:
        super().__init__()
        self.prediction = prediction
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, noisy, timesteps, hidden, return_dict: bool = False):
        self.seen.append((noisy.clone(), timesteps.clone()))
        return (self.prediction,)


def ddpm(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler.from_config(SD15_SCHEDULER, prediction_type=prediction_type)


def loss_by_hand(
    sched: DDPMScheduler, prediction_type: str, snr_gamma: float | None, seed: int
) -> tuple[float, float, torch.Tensor]:
    """(our loss, the loss by hand, the timesteps drawn) on a fixed batch and prediction."""
    gen = torch.Generator().manual_seed(123)
    latents = torch.randn(16, 4, 4, 4, generator=gen, dtype=torch.float64)
    prediction = torch.randn(16, 4, 4, 4, generator=gen, dtype=torch.float64)
    unet = FixedPrediction(prediction)
    torch.manual_seed(seed)
    ours = float(diffusion_loss(unet, latents, torch.zeros(16, 2, 8), sched, snr_gamma))
    # the draws, read off what the UNet was given: noisy = sqrt(a) x0 + sqrt(1 - a) eps
    ((noisy, timesteps),) = unet.seen
    alpha_bar = sched.alphas_cumprod.double()[timesteps].view(-1, 1, 1, 1)
    noise = (noisy - alpha_bar.sqrt() * latents) / (1 - alpha_bar).sqrt()
    assert 0.8 < float(noise.std()) < 1.2  # standard normal noise (1024 draws)
    if prediction_type == "epsilon":
        target = noise
    else:  # v = sqrt(a) eps - sqrt(1 - a) x0
        target = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents
    per_item = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    if snr_gamma is None:
        return ours, float(per_item.mean()), timesteps
    snr = (alpha_bar / (1 - alpha_bar)).flatten()
    torch.testing.assert_close(snr.float(), compute_snr(sched, timesteps).float())
    clipped = torch.minimum(snr, torch.full_like(snr, snr_gamma))
    # diffusers' train_text_to_image.py: min(snr, gamma) / snr, or / (snr + 1) for v
    weights = clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)
    return ours, float((per_item * weights).mean()), timesteps


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_loss_target_is_the_noise_or_the_velocity(prediction_type: str) -> None:
    sched = ddpm(prediction_type)
    ours, hand, _ = loss_by_hand(sched, prediction_type, None, seed=0)
    assert ours == pytest.approx(hand, rel=1e-5)
    # the other target gives another loss: the test tells them apart
    other = "v_prediction" if prediction_type == "epsilon" else "epsilon"
    _, wrong, _ = loss_by_hand(ddpm(other), other, None, seed=0)
    assert abs(hand - wrong) > 1e-2 * hand


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_are_those_of_diffusers_text_to_image(prediction_type: str) -> None:
    gamma = 1.0  # SNR 1 at a timestep near 400 of 1000: both sides of gamma are drawn
    ours, hand, timesteps = loss_by_hand(ddpm(prediction_type), prediction_type, gamma, seed=1)
    snr = compute_snr(ddpm(prediction_type), timesteps)
    assert (snr > gamma).any() and (snr < gamma).any()
    assert ours == pytest.approx(hand, rel=1e-5)
    unweighted, _, _ = loss_by_hand(ddpm(prediction_type), prediction_type, None, seed=1)
    assert abs(ours - unweighted) > 1e-2 * unweighted


# --- SD: the saved UNet holds the EMA weights -------------------------------------------

CAPTIONS = [
    "the lady is wearing a red long-sleeved blouse.",
    "the man wore a blue short-sleeved tee.",
    "the lady was wearing a black sleeveless dress.",
    "the man is wearing a white long-sleeved sweater.",
]


def ema_decays(steps: int) -> list[float]:
    """diffusers' EMAModel decay at optimiser steps 1..steps (no warmup, decay 0.999):
    0 at the first step (the shadow becomes the weights), then (1 + n) / (10 + n), n = step - 1."""
    return [0.0] + [min((1 + n) / (10 + n), 0.999) for n in range(1, steps)]


def test_saved_weights_are_the_ema_of_the_trained_weights(tmp_path: Path) -> None:
    AcceleratorState._reset_state(True)
    tiny = TINY_SD_PARAMS["base_sd"]["tiny"]
    captions = CAPTIONS * 2
    pipe = build_tiny_sd(captions, tiny, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    cfg = TrainConfig(
        resolution=32,
        batch_size=4,
        steps=3,
        lr=1e-2,
        text_encoder_lr=1e-2,
        ema=True,
        caption_dropout=0.0,
    )
    tuner = FineTuner(
        pipe,
        DDPMScheduler.from_config(SD15_SCHEDULER),
        cfg,
        TrainData(images, captions),
        Accelerator(),
    )
    unet = tuner.accelerator.unwrap_model(tuner.unet)
    text_encoder = tuner.accelerator.unwrap_model(tuner.text_encoder)

    def weights(model: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    ema: dict[str, dict[str, torch.Tensor]] = {}
    live: dict[str, dict[str, torch.Tensor]] = {}
    for step, decay in enumerate(ema_decays(cfg.steps)):
        tuner.train_step(step)
        live = {"unet": weights(unet), "text_encoder": weights(text_encoder)}
        for part, now in live.items():
            old = ema.get(part, now)
            ema[part] = {n: decay * old[n] + (1 - decay) * now[n] for n in now}
    tuner.save(tmp_path / "sd")

    files = {
        "unet": "unet/diffusion_pytorch_model.safetensors",
        "text_encoder": "text_encoder/model.safetensors",
    }
    for part, file in files.items():
        saved = load_file(tmp_path / "sd" / file)
        assert set(ema[part]) <= set(saved)
        for name, expected in ema[part].items():
            torch.testing.assert_close(
                saved[name], expected, rtol=0, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
            )
        # the live weights are far from the EMA ones: the check above tells them apart
        gap = max(float((saved[n] - live[part][n]).abs().max()) for n in live[part])
        assert gap > 1e-3, part


# --- Inception Score -------------------------------------------------------------------


def reference_inception_score(logits: torch.Tensor, splits: int, seed: int) -> tuple[float, float]:
    """torchmetrics' IS written out in numpy: images shuffled by `torch.randperm` under
    `seed`, cut into `splits` chunks; per chunk exp(mean_i KL(p_i || mean p)); mean and
    sample std over the chunks."""
    torch.manual_seed(seed)
    order = torch.randperm(len(logits)).numpy()
    x = logits.double().numpy()[order]
    log_p = _log_softmax(x)
    scores = []
    for chunk in np.array_split(log_p, splits):  # torch.chunk's sizes for these tests
        p = np.exp(chunk)
        marginal = p.mean(axis=0, keepdims=True)
        scores.append(math.exp((p * (chunk - np.log(marginal))).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if splits > 1 else 0.0


def confident(labels: list[int], k: int, confidence: float = 60.0) -> torch.Tensor:
    return confidence * nn.functional.one_hot(torch.tensor(labels), k).float()


def test_inception_score_of_confident_uniform_classes_in_one_split_is_k() -> None:
    for k in (2, 3, 7):
        mean, std = inception_score(confident(list(range(k)) * 5, k), splits=1)
        assert mean == pytest.approx(k, rel=1e-5)
        assert std == 0.0 or math.isnan(std)  # one split: no spread


def test_inception_score_of_one_class_is_one() -> None:
    mean, std = inception_score(confident([2] * 40, 5), splits=4)
    assert mean == pytest.approx(1.0, abs=1e-5) and std == pytest.approx(0.0, abs=1e-5)


def test_inception_score_of_two_soft_images_by_hand() -> None:
    # p1 = [a, 1 - a], p2 = [1 - a, a]; marginal [1/2, 1/2]
    a = 0.8
    logits = torch.log(torch.tensor([[a, 1 - a], [1 - a, a]]))
    kl = a * math.log(2 * a) + (1 - a) * math.log(2 * (1 - a))
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(math.exp(kl), rel=1e-5)


def test_inception_score_with_fewer_images_than_splits_is_one() -> None:
    # one image per split: each image is its own marginal, KL 0, IS 1
    mean, std = inception_score(confident([0, 1, 2], 3), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-6) and std == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("n", "splits", "seed"), [(40, 4, 0), (30, 3, 5), (12, 2, 1)])
def test_inception_score_matches_torchmetrics_formula(n: int, splits: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(n)
    # mixed classes with varying confidence: the splits differ, so the shuffle matters
    logits = 3.0 * torch.randn(n, 6, generator=gen)
    logits[: n // 2, 0] += 4.0
    mean, std = inception_score(logits, splits=splits, seed=seed)
    ref_mean, ref_std = reference_inception_score(logits, splits, seed)
    assert mean == pytest.approx(ref_mean, rel=1e-5)
    assert std == pytest.approx(ref_std, rel=1e-4)
    assert ref_std > 1e-3  # the std is checked on something that varies


# --- CLIP score ------------------------------------------------------------------------


def unit(*v: float) -> torch.Tensor:
    t = torch.tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_clip_score_known_answers_on_unit_vectors() -> None:
    e1, e2 = unit(1, 0, 0), unit(0, 1, 0)
    assert clip_score(e1[None], e1[None]) == pytest.approx(100.0, rel=1e-6)  # identical
    assert clip_score(e1[None], e2[None]) == pytest.approx(0.0, abs=1e-6)  # orthogonal
    assert clip_score(e1[None], (-e1)[None]) == 0.0  # cosine -1, clamped at 0
    diagonal = unit(1, 1, 0)  # cosine 1/sqrt(2) with e1
    assert clip_score(e1[None], diagonal[None]) == pytest.approx(100 / math.sqrt(2), rel=1e-6)
    # the clamp is on the mean (torchmetrics): cosines 0.6 and -0.2 -> 100 * 0.2 = 20
    images = torch.stack([unit(1, 0, 0), unit(1, 0, 0)])
    texts = torch.stack([unit(0.6, 0.8, 0), unit(-0.2, math.sqrt(0.96), 0)])
    assert clip_score(images, texts) == pytest.approx(20.0, rel=1e-5)
    # a negative mean is 0
    texts = torch.stack([unit(0.2, math.sqrt(0.96), 0), unit(-0.6, 0.8, 0)])
    assert clip_score(images, texts) == 0.0
