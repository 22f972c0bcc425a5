"""Image metrics with known answers: IS, FID, KID, CLIP score, nearest distances, weights."""

from __future__ import annotations

import hashlib
import math
import socket
from pathlib import Path
from unittest import mock
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch import nn
from torchmetrics.image.fid import NoTrainInceptionV3
from torchmetrics.multimodal.clip_score import CLIPScore

from clip_stand_ins import TensorFeatures
from fashion.clip.models import build_tiny_clip, embed_images, embed_texts
from fashion.core.stage import PipelineError
from fashion.metrics import image as image_metrics
from fashion.metrics.image import (
    INCEPTION_FETCH_COMMAND,
    clip_score,
    extract_features,
    fetch_inception_weights,
    frechet_distance,
    inception_score,
    inception_weights_path,
    kernel_distance,
    load_arrays,
    load_inception,
    nearest_pixel_distances,
    resize_images,
    save_arrays,
)
from test_known_answers import reference_inception_score


class PixelClassifier(nn.Module):
    """Stand-in for Inception: the class is the image's first pixel value; confident logits."""

    def __init__(self, n_classes: int, confidence: float) -> None:
        super().__init__()
        self.n_classes, self.confidence = n_classes, confidence

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # uint8 (B, 3, H, W), as Inception's
        labels = x[:, 0, 0, 0].long() % self.n_classes
        return self.confidence * nn.functional.one_hot(labels, self.n_classes).float()


def class_images(n_per_class: int, k: int) -> np.ndarray:
    """uint8 (k * n_per_class, 8, 8, 3) images whose pixels all hold their class index."""
    labels = np.repeat(np.arange(k, dtype=np.uint8), n_per_class)
    return np.ascontiguousarray(
        np.broadcast_to(labels[:, None, None, None], (len(labels), 8, 8, 3))
    )


def class_logits(n_per_class: int, k: int, n_classes: int, confidence: float) -> torch.Tensor:
    """Logits (k * n_per_class, n_classes) of `PixelClassifier` on `class_images`."""
    images = torch.from_numpy(class_images(n_per_class, k)).permute(0, 3, 1, 2)
    return PixelClassifier(n_classes, confidence)(images)


def test_inception_score_of_uniform_probabilities_is_one() -> None:
    mean, std = inception_score(class_logits(50, 4, n_classes=10, confidence=0.0))
    assert mean == pytest.approx(1.0, abs=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_inception_score_of_confident_balanced_classes_is_k(k: int) -> None:
    # 10 splits of 100 shuffled images: each split's class marginal is near, not exactly,
    # uniform, so IS = exp(H(marginal)) sits a little under k (within 5%).
    mean, _ = inception_score(class_logits(1000 // k, k, n_classes=k, confidence=50.0))
    assert mean == pytest.approx(k, rel=0.05)
    assert mean <= k + 1e-4


def test_inception_score_shuffle_is_seeded() -> None:
    logits = class_logits(30, 3, n_classes=3, confidence=50.0)[torch.randperm(90)]
    assert inception_score(logits, seed=3) == inception_score(logits, seed=3)


def test_fid_of_a_set_against_itself_is_zero_and_a_mean_shift_is_its_squared_norm() -> None:
    features = torch.randn(400, 8, generator=torch.Generator().manual_seed(0)).double()
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    # same covariance, mean moved by 1 in each of 8 dims: FID = ||shift||^2 = 8
    assert frechet_distance(features + 1.0, features) == pytest.approx(8.0, rel=1e-6)


def test_kid_fits_small_sets_and_separates_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(30, 8, generator=gen).double()
    same = torch.randn(30, 8, generator=gen).double()
    shifted = same + 2.0
    kid_same, _ = kernel_distance(same, real, subsets=20)  # subset_size 1000 cut to 30
    kid_shifted, std = kernel_distance(shifted, real, subsets=20)
    assert kid_shifted > 0.5 and std >= 0
    assert abs(kid_same) < 0.05 * kid_shifted
    assert kernel_distance(shifted, real, subsets=20, seed=1) == kernel_distance(
        shifted, real, subsets=20, seed=1
    )


def test_resize_pipeline_and_feature_extraction() -> None:
    images = np.full((5, 64, 64, 3), 200, dtype=np.uint8)
    images[:, :, :32] = 10  # left half dark
    small = resize_images(images, 32, batch_size=2)
    assert small.shape == (5, 32, 32, 3) and small.dtype == np.uint8
    assert (small[:, :, :15] == 10).all() and (small[:, :, 17:] == 200).all()
    assert resize_images(images, 64) is images
    (pixels,) = extract_features(small, nn.Flatten(), batch_size=2)
    assert (
        pixels.shape == (5, 3 * 32 * 32)
        and (pixels.reshape(5, 3, 32, 32)[:, :, :, :15] == 10).all()
    )


class MeanAndPixels(nn.Module):
    """Stand-in for a several-feature extractor: (channel means, flat pixels) of a batch."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.float().mean(dim=(2, 3)), x.flatten(1)


def test_extract_features_keeps_every_output_of_one_pass_in_image_order() -> None:
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    means, pixels = extract_features(images, MeanAndPixels(), batch_size=3)
    np.testing.assert_allclose(means.numpy(), images.mean(axis=(1, 2)), rtol=1e-6)
    assert torch.equal(pixels, torch.from_numpy(images).permute(0, 3, 1, 2).flatten(1))


def test_nearest_pixel_distances_known_answer() -> None:
    """RMS pixel difference on a 0-1 scale to the nearest reference, chunk by chunk."""
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    grey = np.full((2, 2, 3), 51, np.uint8)  # 0.2 of white
    half = black.copy()
    half[0] = 255  # half the pixels white
    references = np.stack([black, white, grey])
    got = nearest_pixel_distances(np.stack([black, half, grey, white]), references, chunk=2)
    # black: itself; half: 0.5 of its pixels 0.8 from grey and 0.5 at 0.2 -> sqrt(0.34)
    np.testing.assert_allclose(got, [0.0, math.sqrt(0.5 * 0.64 + 0.5 * 0.04), 0.0, 0.0],
                               atol=1e-3)  # fmt: skip
    with pytest.raises(ValueError, match="shape"):
        nearest_pixel_distances(np.zeros((1, 4, 4, 3), np.uint8), references)


# --- CLIP score on a tiny model ---------------------------------------------------------

CAPTIONS = [
    "the lady is wearing a red long-sleeved blouse.",
    "the man wore a blue short-sleeved tee.",
    "the lady was wearing a black sleeveless dress.",
    "the man is wearing a white long-sleeved sweater.",
]
TINY = {
    "vocab_size": 300,
    "image_size": 32,
    "patch_size": 8,
    "vision_width": 32,
    "vision_layers": 2,
    "vision_heads": 2,
    "text_width": 32,
    "text_layers": 2,
    "text_heads": 2,
    "max_length": 32,
    "projection_dim": 16,
}


@pytest.fixture(scope="module")
def tiny_clip():
    return build_tiny_clip(CAPTIONS * 4, TINY, seed=0)


def test_clip_score_matches_hand_computation_and_torchmetrics(tiny_clip) -> None:
    model, processor = tiny_clip
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    captions = [CAPTIONS[i % 4] for i in range(8)]
    image_emb = embed_images(model, processor, images, batch_size=3)
    text_emb = embed_texts(model, processor, captions, batch_size=3)
    if (image_emb * text_emb).sum(-1).max() <= 0:  # this torch's random init: all pairs apart
        model.text_projection.weight.data.neg_()  # mirrored texts: some pairs come out aligned
        text_emb = embed_texts(model, processor, captions, batch_size=3)

    # by hand: towers, projections, cosine, x100, clamp at 0 (torchmetrics' definition)
    with torch.no_grad():
        chw = torch.from_numpy(images).permute(0, 3, 1, 2)
        pixels = processor(images=list(chw), return_tensors="pt")["pixel_values"]
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        tok = processor(text=captions, return_tensors="pt", padding=True)
        txt = model.text_projection(model.text_model(**tok).pooler_output)
    cosine = nn.functional.cosine_similarity(img, txt, dim=-1)
    reference = TensorFeatures(model)
    scores = []
    for i in range(8):
        hand = max(100 * float(cosine[i]), 0.0)
        ours = clip_score(image_emb[i : i + 1], text_emb[i : i + 1])
        metric = CLIPScore(model_name_or_path=lambda: (reference, processor))
        metric.update(chw[i : i + 1], captions[i])
        assert ours == pytest.approx(hand, abs=1e-3)
        assert ours == pytest.approx(float(metric.compute()), abs=1e-3)
        scores.append(ours)
    assert any(s > 0 for s in scores)  # the clamp is not all the test sees
    assert clip_score(image_emb, text_emb) == pytest.approx(
        max(100 * float(cosine.mean()), 0), abs=1e-3
    )


# --- Inception-v3 weights: a local file, or downloaded once with a hash check ----------


def save_random_inception(path: Path) -> Path:
    """Save a randomly initialised torch-fidelity Inception-v3 state dict (built offline)."""
    torch.manual_seed(0)
    with (  # construct without the download and the load of the real weights
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_inception(tmp_path_factory.mktemp("inception") / "inception.pth")


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def test_weights_path_loads_offline_and_one_pass_gives_both_features(
    random_inception_weights: Path, monkeypatch
) -> None:
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    path = inception_weights_path(str(random_inception_weights))
    model = load_inception(path)
    saved = torch.load(random_inception_weights)
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    logits, pool = extract_features(images, model, batch_size=3)
    assert logits.shape == (4, 1008) and pool.shape == (4, 2048)
    # the same numbers as torchmetrics' one-feature modules, each its own pass
    for feature, ours in (("logits_unbiased", logits), ("2048", pool)):
        single = NoTrainInceptionV3("inception-v3-compat", [feature], str(path))
        (theirs,) = extract_features(images, single, batch_size=3)
        torch.testing.assert_close(ours, theirs)
    # IS of these 1008-class logits against the formula written out in the test. The random
    # network predicts (almost) the same for every image: IS 1. Confident distinct classes
    # added to them: the 2 images of each split differ, IS near 2 per split.
    for scores in (logits, logits + 30 * nn.functional.one_hot(torch.arange(4), 1008)):
        mean, std = inception_score(scores, splits=2)
        ref_mean, ref_std = reference_inception_score(scores, splits=2, seed=0)
        assert mean == pytest.approx(ref_mean, rel=1e-5)
        assert std == pytest.approx(ref_std, rel=1e-4, abs=1e-6)
    assert inception_score(logits, splits=2)[0] == pytest.approx(1.0, abs=1e-4)
    assert mean == pytest.approx(2.0, rel=1e-2)


def test_missing_weights_error_names_the_path_and_the_fetch_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(PipelineError) as err:
        inception_weights_path(str(missing))
    assert str(missing) in str(err.value) and INCEPTION_FETCH_COMMAND in str(err.value)


def test_default_weights_come_from_the_torch_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PipelineError, match=str(tmp_path / "hub" / "checkpoints")):
        inception_weights_path(None)
    cached = tmp_path / "hub" / "checkpoints" / tf_inception.URL_INCEPTION_V3.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert inception_weights_path(None) == cached


def test_damaged_weights_file_is_a_pipeline_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(PipelineError, match="bad.pth"):
        load_inception(bad)


class Downloads:
    """Stand-in for torch hub's downloader: records each call, then lets torch hub's real
    `download_url_to_file` (temporary file, hash check, move) fetch `source` instead."""

    def __init__(self, source: Path, hash_prefix: str | None = None) -> None:
        self.source, self.hash_prefix, self.calls = source, hash_prefix, []

    def __call__(self, url: str, dst: str, hash_prefix: str | None = None, **kwargs) -> None:
        self.calls.append((url, Path(dst), hash_prefix))
        expected = self.hash_prefix or hash_prefix
        torch.hub.download_url_to_file(self.source.as_uri(), dst, expected, progress=False)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_absent_weights_are_downloaded_once_from_the_published_url_into_the_hub_cache(
    random_inception_weights: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # the stand-in file has its own hash: check it with that, record the one asked for
    download = Downloads(random_inception_weights, sha256_of(random_inception_weights)[:8])
    monkeypatch.setattr(image_metrics, "download_url_to_file", download)
    cached = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert fetch_inception_weights(None) == cached
    assert download.calls == [(tf_inception.URL_INCEPTION_V3, cached, "6726825d")]
    assert cached.read_bytes() == random_inception_weights.read_bytes()
    load_inception(cached)
    assert fetch_inception_weights(None) == cached and len(download.calls) == 1  # cached now


def test_weights_param_is_the_download_destination(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "source.pth"
    source.write_bytes(b"weights")
    download = Downloads(source, sha256_of(source)[:8])
    monkeypatch.setattr(image_metrics, "download_url_to_file", download)
    target = tmp_path / "models" / "inception.pth"
    assert fetch_inception_weights(str(target)) == target and target.read_bytes() == b"weights"
    assert download.calls[0][1] == target


def test_a_download_failing_the_hash_check_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    source = tmp_path / "tampered.pth"
    source.write_bytes(b"not the published weights")
    monkeypatch.setattr(image_metrics, "download_url_to_file", Downloads(source))
    with pytest.raises(PipelineError, match="SHA-256") as err:
        fetch_inception_weights(None)
    assert tf_inception.URL_INCEPTION_V3 in str(err.value)
    assert [p for p in (tmp_path / "torch").rglob("*") if p.is_file()] == []


def test_offline_download_fails_with_the_fetch_command(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(image_metrics, "download_url_to_file", offline)
    missing = tmp_path / "weights.pth"
    with pytest.raises(PipelineError) as err:
        fetch_inception_weights(str(missing))
    message = str(err.value)
    assert str(missing) in message and INCEPTION_FETCH_COMMAND in message
    assert "Connection refused" in message and not missing.exists()


# --- reference arrays -------------------------------------------------------------------


def test_arrays_round_trip_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "reference" / "ref.npz"
    arrays = {"rows": np.arange(5), "size": np.array(64), "pool": np.ones((5, 3), np.float32)}
    save_arrays(path, arrays)
    assert [p.name for p in path.parent.iterdir()] == ["ref.npz"]  # no temporary left
    loaded = load_arrays(path, ("rows", "size"), "reference")
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    with pytest.raises(PipelineError, match=r"missing arrays \['test'\].*reference stage"):
        load_arrays(path, ("rows", "test"), "reference")
    with pytest.raises(PipelineError, match="not found.*embed_reference"):
        load_arrays(tmp_path / "absent.npz", ("rows",), "embed_reference")
    path.write_bytes(b"truncated")
    with pytest.raises(PipelineError, match="ref.npz: not a readable"):
        load_arrays(path, ("rows",), "reference")


def offline(url: str, dst: str, hash_prefix: str | None = None, **kwargs) -> None:
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_skip_inception_auto_fetches_where_it_can(tmp_path: Path, monkeypatch) -> None:
    """auto, connected (the download faked): the weights, fetched; the metrics say computed."""
    source = tmp_path / "source.pth"
    source.write_bytes(b"weights")
    monkeypatch.setattr(
        image_metrics, "download_url_to_file", Downloads(source, sha256_of(source)[:8])
    )
    target = tmp_path / "inception.pth"
    p = {"skip_inception": "auto", "inception_weights": str(target)}
    assert image_metrics.inception_weights(p, "evaluate") == target and target.is_file()
    assert image_metrics.inception_mode(p, computed=True) == "computed"


def test_skip_inception_auto_offline_is_null_with_one_warning_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """auto, offline: None and one warning line naming the param, where the file goes and
    the command that re-runs the Inception stages; false, offline: the error as before;
    true: nothing fetched."""
    monkeypatch.setattr(image_metrics, "download_url_to_file", offline)
    target = tmp_path / "inception.pth"
    p = {"skip_inception": "auto", "inception_weights": str(target)}
    assert image_metrics.inception_weights(p, "reference") is None
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and warning.startswith("warning: reference: IS/FID/KID")
    for part in ("evaluate.skip_inception is auto", str(target), image_metrics.RERUN_INCEPTION):
        assert part in warning
    assert image_metrics.inception_mode(p, computed=False) == "unavailable"
    with pytest.raises(PipelineError, match="Inception-v3 weights not found"):
        image_metrics.inception_weights(p | {"skip_inception": False}, "reference")
    monkeypatch.setattr(image_metrics, "download_url_to_file", None)  # never called
    skipped = p | {"skip_inception": True}
    assert image_metrics.inception_weights(skipped, "evaluate") is None
    assert image_metrics.inception_mode(skipped, computed=False) == "skipped"
    assert not target.exists()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_skip_inception_takes_true_false_or_auto(value: object) -> None:
    p = {"skip_inception": value, "inception_weights": None}
    with pytest.raises(PipelineError, match="evaluate.skip_inception: must be true, false or auto"):
        image_metrics.inception_weights(p, "evaluate")
