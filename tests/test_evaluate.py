"""The evaluate stage, run as a script on a small project: tiny CLIPs, subset files, PNGs,
and the real-image reference written by the reference stages.

The "fine-tuned" generator here returns the real test images themselves and the "base" one
returns training images, which gives known answers: the fine-tuned set scores exactly like
the real set (IS, attribute accuracy, train distance), its FID is ~0, and the base set's
nearest training image is itself (distance ~0).
"""

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
from torch import nn

from conftest import ROOT, run
from fashion.clip.models import build_tiny_clip
from fashion.core.provenance import write_source
from fashion.core.stage import PipelineError
from fashion.data.subset import read_images
from fashion.metrics.image import INCEPTION_FETCH_COMMAND, URL_INCEPTION_V3, extract_features
from subset_writer import SIZE, make_rows, write_subset
from test_image_metrics import TINY, PixelClassifier

STAGE = ROOT / "stages" / "evaluate.py"
G_KEYS = {
    "n_images", "inception_score", "inception_score_std", "fid", "kid", "kid_std", "clip_score",
    "clip_score_finetuned_clip", "attr_acc", "nearest_train_distance",
}  # fmt: skip
N_TRAIN, N_TEST, N_BASE = 24, 12, 10
# Downloads go to a closed local port: a test never fetches anything.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": ""}  # fmt: skip


def evaluate_params(**overrides) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]
    return params | {"batch_size": 8, "kid_subsets": 10} | overrides


def write_params(project: Path, evaluate: dict) -> None:
    """The sections evaluate and the reference stages read; images stay at their size."""
    reference = {"seed": 0, "n_real": "all", "n_train": "all", "batch_size": 8}
    params = {"generate": {"resolution": SIZE}, "reference": reference, "evaluate": evaluate}
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    train_rows, test_rows = make_rows(N_TRAIN, seed=0), make_rows(N_TEST, seed=1, start=N_TRAIN)
    train = write_subset(root / "data/subset/train.h5", train_rows, seed=0)
    test = write_subset(root / "data/subset/test.h5", test_rows, seed=1)
    captions = [r["caption"] for r in train_rows]
    for folder, seed in (("base_clip", 0), ("clip", 1)):
        model, processor = build_tiny_clip(captions, TINY, seed=seed)
        model.save_pretrained(root / "models" / folder)
        processor.save_pretrained(root / "models" / folder)
    write_source(root / "models/base_clip", "models/base_clip")

    generated = root / "data/generated"
    manifest = []
    for model, path, rows in (
        ("base", train, train_rows[:N_BASE]),
        ("finetuned", test, test_rows),
    ):
        (generated / model).mkdir(parents=True)
        for i, (image, row) in enumerate(zip(read_images(path)[: len(rows)], rows, strict=True)):
            Image.fromarray(image).save(generated / model / f"{i:04d}.png")
            codes = {k: row[k] for k in ("gender", "color", "sleeve", "category")}
            manifest.append({"file": f"{model}/{i:04d}.png", "model": model,
                             "prompt": row["caption"], "seed": i, **codes})  # fmt: skip
    manifest.append(
        {"file": "base/0000.png", "model": "base", "prompt": "a red garment.", "seed": 99}
    )
    pd.DataFrame(manifest).to_csv(generated / "manifest.csv", index=False)  # last: out of domain

    import embed_reference
    import reference

    write_params(root, evaluate_params())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        reference.main()
        embed_reference.main()
    return root


def run_stage(project: Path, params: dict, check: bool = True):
    write_params(project, params)
    return run(["python", str(STAGE)], project, check=check, timeout=600, env=OFFLINE)


def test_offline_default_records_null_inception_metrics(project: Path) -> None:
    proc = run_stage(project, evaluate_params())
    assert "skip_inception" in proc.stdout  # the reason is logged
    metrics = json.loads((project / "metrics/generation.json").read_text())
    assert set(metrics) == {"base", "finetuned", "real"}
    for name, g in metrics.items():
        assert set(g) == G_KEYS, name
        assert set(g["attr_acc"]) == {"color", "sleeve", "category", "gender"}
        for key in ("inception_score", "inception_score_std", "fid", "kid", "kid_std"):
            assert g[key] is None, (name, key)
    assert [metrics[n]["n_images"] for n in ("base", "finetuned", "real")] == [
        N_BASE + 1,
        N_TEST,
        N_TEST,
    ]
    for name in ("base", "finetuned"):
        for key in ("clip_score", "clip_score_finetuned_clip"):
            assert 0.0 <= metrics[name][key] <= 100.0
    assert metrics["real"]["clip_score"] is None
    # a generator that returns the test images is judged exactly like the test images
    assert metrics["finetuned"]["attr_acc"] == metrics["real"]["attr_acc"]
    assert metrics["finetuned"]["nearest_train_distance"] == pytest.approx(
        metrics["real"]["nearest_train_distance"], abs=1e-6
    )
    assert metrics["base"]["nearest_train_distance"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["real"]["nearest_train_distance"] > 1e-3
    plots = project / "plots/evaluate"
    for name in ("base", "finetuned", "real"):
        hist = pd.read_csv(plots / f"memorisation_{name}.csv")
        assert list(hist.columns) == ["distance", "share"]
        assert hist["share"].sum() == pytest.approx(1.0)
    assert (plots / "memorisation.png").stat().st_size > 0


class ChannelStats(nn.Module):
    """Stand-in for Inception's pool features: per-channel mean and spread of the pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().flatten(2)
        return torch.cat([x.mean(-1), x.std(-1)], dim=1)


class StandInInception(nn.Module):
    """Stand-in for Inception-v3's one pass: (IS logits, pool features) of a uint8 batch."""

    def __init__(self) -> None:
        super().__init__()
        self.logits, self.pool = PixelClassifier(4, confidence=50.0), ChannelStats()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits(x), self.pool(x)


def stand_in_reference(real: np.ndarray) -> dict[str, np.ndarray]:
    logits, pool = extract_features(real, StandInInception(), batch_size=8)
    return {"logits": logits.numpy(), "pool": pool.numpy()}


def test_inception_metrics_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    """IS of every set, FID/KID of generated sets only, each set against the real reference;
    the weights are fetched (here: a stand-in) and the model goes to the given device."""
    import evaluate

    fetched, loaded = [], []
    monkeypatch.setattr(evaluate, "fetch_inception_weights", lambda p: fetched.append(p) or p)
    monkeypatch.setattr(
        evaluate,
        "load_inception",
        lambda w, device: loaded.append((w, device)) or StandInInception(),
    )
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    images = {"base": rng.integers(0, 128, (30, 16, 16, 3), dtype=np.uint8), "finetuned": real}
    p = evaluate_params(skip_inception=False, inception_weights="w.pth", is_splits=2, kid_subsets=5)
    metrics = evaluate.inception_metrics(p, images, stand_in_reference(real), "cpu")
    assert fetched == ["w.pth"] and loaded == [("w.pth", "cpu")]
    assert metrics["finetuned"] == metrics["real"] | {
        "fid": pytest.approx(0.0, abs=1e-6), "kid": metrics["finetuned"]["kid"],
        "kid_std": metrics["finetuned"]["kid_std"],
    }  # fmt: skip
    assert metrics["real"]["fid"] is None and metrics["real"]["kid"] is None
    assert metrics["base"]["fid"] > 100 and metrics["base"]["kid"] > 10 * abs(
        metrics["finetuned"]["kid"]
    )
    assert 1.0 < metrics["real"]["inception_score"] <= 4.0


def test_reference_without_inception_features_is_a_clear_error(monkeypatch) -> None:
    import evaluate

    monkeypatch.setattr(evaluate, "fetch_inception_weights", lambda p: p)
    monkeypatch.setattr(evaluate, "load_inception", lambda w, device: StandInInception())
    images = {name: np.zeros((2, 8, 8, 3), np.uint8) for name in ("base", "finetuned")}
    p = evaluate_params(skip_inception=False)
    with pytest.raises(PipelineError, match="inception.npz: no Inception features"):
        evaluate.inception_metrics(p, images, {"test_rows": np.arange(2)}, "cpu")


def test_reference_of_another_size_or_sample_is_a_clear_error() -> None:
    import evaluate

    generated = {name: np.zeros((2, 64, 64, 3), np.uint8) for name in ("base", "finetuned")}
    inception = {"test_rows": np.arange(3), "size": np.array(64), "real_size": np.array(128)}
    clip = {"test_rows": np.arange(3), "size": np.array(64)}
    assert evaluate.evaluation_size(generated, (inception, clip)) == 64
    with pytest.raises(PipelineError, match=r"clip.npz: real images at 128 px.*64 px"):
        evaluate.evaluation_size(generated, (inception, clip | {"size": np.array(128)}))
    small = {name: np.zeros((2, 32, 32, 3), np.uint8) for name in generated}
    with pytest.raises(PipelineError, match=r"inception.npz: real images at 64 px.*at 32 px"):
        evaluate.evaluation_size(small, (inception, clip))


def _outputs(project: Path) -> list[Path]:
    return [
        p for p in (project / "metrics/generation.json", project / "plots/evaluate") if p.exists()
    ]


def test_offline_missing_weights_fail_with_the_path_and_the_fetch_command(
    project: Path, tmp_path: Path
) -> None:
    """A fresh machine whose reference came from the DVC cache fetches the weights itself;
    offline, that fails with the one message."""
    for path in _outputs(project):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    missing = tmp_path / "no-weights.pth"
    proc = run_stage(
        project, evaluate_params(skip_inception=False, inception_weights=str(missing)), check=False
    )
    assert proc.returncode == 1
    assert str(missing) in proc.stderr and INCEPTION_FETCH_COMMAND in proc.stderr
    assert URL_INCEPTION_V3 in proc.stderr and "Traceback" not in proc.stderr
    assert _outputs(project) == [] and not missing.exists()


def test_bad_manifest_is_a_clear_error(project: Path) -> None:
    manifest = project / "data/generated/manifest.csv"
    good = manifest.read_text()
    try:
        pd.read_csv(manifest).drop(columns=["prompt"]).to_csv(manifest, index=False)
        proc = run_stage(project, evaluate_params(), check=False)
        assert proc.returncode == 1
        assert "manifest.csv" in proc.stderr and "prompt" in proc.stderr
    finally:
        manifest.write_text(good)
