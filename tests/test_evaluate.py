"""The evaluate stage, run as its script runs it, on a small project: tiny CLIPs, subset
files, PNGs, and the real-image reference written by the reference stage.

The "fine-tuned" generator here returns the real test images themselves and the "base" one
returns training images, which gives known answers: the fine-tuned set is judged exactly like
the real set (attribute accuracy by every judge, CLIP score, pixel distance to the training
images), and the base set's nearest training image is itself (distance 0). eval_clip runs on
the same project: at the same size, the judges reproduce its attribute accuracy.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
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
from fashion.core.stage import run_stage as run_stage_main
from fashion.data.subset import read_images
from fashion.metrics.image import (
    INCEPTION_FETCH_COMMAND,
    URL_INCEPTION_V3,
    extract_features,
    resize_images,
)
from subset_writer import SIZE, make_rows, write_subset
from test_image_metrics import TINY, Downloads, PixelClassifier, save_random_inception, sha256_of
from test_known_answers import reference_inception_score

STAGE = ROOT / "stages" / "evaluate.py"
MODELS = ("finetuned", "base")
SET_KEYS = {
    "inception_score", "inception_score_std", "fid", "kid", "kid_std", "clip_score", "attr_acc",
    "nearest_train_pixels", "nearest_train_pixels_n", "nearest_train_pixels_ci95_low",
    "nearest_train_pixels_ci95_high",
}  # fmt: skip
JUDGES = {"finetuned_clip", "base_clip", "pixel"}
INTERVAL_KEYS = re.compile(r"_(n|ci95_low|ci95_high)$")


def headline(block: dict) -> dict:
    """A metrics block without the intervals' sibling keys."""
    return {k: v for k, v in block.items() if not INTERVAL_KEYS.search(k)}


def check_intervals(block: dict) -> None:
    """Every number of the block lies in its interval; counts are whole."""
    for key, value in headline(block).items():
        if value is not None:
            assert block[f"{key}_ci95_low"] <= value <= block[f"{key}_ci95_high"], key
            assert isinstance(block[f"{key}_n"], int) and block[f"{key}_n"] > 0, key


N_TRAIN, N_TEST = 24, 12
# grid prompts: two combinations of train rows (seen) and one no train row has (unseen)
UNSEEN = {"gender": 1, "color": 17, "sleeve": 4, "category": 19}
# Downloads go to a closed local port: a test never fetches anything.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": ""}  # fmt: skip


def evaluate_params(**overrides) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]
    return params | {"batch_size": 8, "kid_subsets": 10, "is_splits": 3} | overrides


def write_params(project: Path, evaluate: dict) -> None:
    """The sections evaluate and the reference stage read; images stay at their size."""
    params = {
        "split": {"validation_images": 2, "seed": 0, "evaluate": "test"},
        "generate": {"resolution": SIZE},
        "reference": {
            "seed": 0, "n_images": "all", "n_train_images": "all", "memorisation_size": 16,
            "batch_size": 8,
        },
        "eval_clip": {
            "n_images": "all", "seed": 0, "batch_size": 8, "chunk": 8, "histogram_bins": 10,
        },
        "evaluate": evaluate,
    }  # fmt: skip
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
    attributes = ("gender", "color", "sleeve", "category")
    grid = [{k: r[k] for k in attributes} for r in train_rows[:2]] + [UNSEEN]
    manifest = []
    for model, path in (("base", train), ("finetuned", test)):
        (generated / model).mkdir(parents=True)
        images = read_images(path)
        for i, row in enumerate(test_rows):  # the matched set: one image per test image
            Image.fromarray(images[i]).save(generated / model / f"{i:04d}.png")
            manifest.append({"file": f"{model}/{i:04d}.png", "model": model, "seed": i,
                             "prompt": row["caption"], "source": "matched", "row": i,
                             **{k: row[k] for k in attributes}})  # fmt: skip
        for j, codes in enumerate(grid):
            name = f"{model}/g{j}.png"
            Image.fromarray(images[j]).save(generated / name)
            manifest.append({"file": name, "model": model, "seed": 100 + j, "prompt": "grid",
                             "source": "in_domain", **codes})  # fmt: skip
        manifest.append({"file": f"{model}/0000.png", "model": model, "seed": 99,
                         "prompt": "a red garment.", "source": "free_form"})  # fmt: skip
    table = pd.DataFrame(manifest)
    for column in ("row", *attributes):
        table[column] = table[column].astype("Int64")
    table.to_csv(generated / "manifest.csv", index=False)

    import eval_clip
    import reference

    write_params(root, evaluate_params(skip_inception=True))  # hermetic: nothing fetched
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        reference.main()
        eval_clip.main()
    return root


@dataclass
class StageResult:
    returncode: int
    stdout: str
    stderr: str


def run_stage(project: Path, params: dict, check: bool = True) -> StageResult:
    """evaluate in `project` as `python stages/evaluate.py` runs it (a `PipelineError` is a
    one-line message and exit code 1), offline; in this process, which saves the stage
    process's seconds of imports."""
    import evaluate

    write_params(project, params)
    out, err, returncode = io.StringIO(), io.StringIO(), 0
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        mp.chdir(project)
        for name, value in OFFLINE.items():
            mp.setenv(name, value)
        # urllib keeps the opener (and the proxies) of its first use: built afresh here
        mp.setattr(urllib.request, "_opener", None)
        try:
            run_stage_main(evaluate.main, [])
        except SystemExit as exit_:
            returncode = 0 if exit_.code is None else exit_.code
    result = StageResult(returncode, out.getvalue(), err.getvalue())
    assert not check or returncode == 0, f"evaluate exited {returncode}: {result.stderr[-4000:]}"
    return result


def test_offline_default_records_null_inception_metrics(project: Path) -> None:
    """The default, skip_inception: auto, offline (the proxies closed): IS/FID/KID null,
    one warning line that says where the weights go and how to re-run, and the mode."""
    from fashion.metrics.image import RERUN_INCEPTION

    absent = project / "absent-inception.pth"  # not the hub cache: the same on every machine
    assert evaluate_params()["skip_inception"] == "auto"
    proc = run_stage(project, evaluate_params(inception_weights=str(absent)))
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert "evaluate.skip_inception is auto" in warning and str(absent) in warning
    assert warning.endswith(RERUN_INCEPTION) and not absent.exists()
    metrics = json.loads((project / "metrics/generation.json").read_text())
    assert metrics["matched"].pop("inception") == "unavailable"
    assert set(metrics) == {"split", "matched", "grid", "environment"}
    assert metrics["split"] == "test" and metrics["environment"]["device"] == "cpu"
    matched = metrics["matched"]
    assert matched["n"] == N_TEST and matched["is_split_size"] == N_TEST // 3
    for name in ("base", "finetuned", "real"):
        m = matched[name]
        assert set(m) == SET_KEYS, name
        assert set(m["attr_acc"]) == JUDGES
        assert set(headline(m["clip_score"])) == {"finetuned_clip", "base_clip"}
        check_intervals(m["clip_score"])
        for judge in JUDGES:
            check_intervals(m["attr_acc"][judge])
        assert m["attr_acc"]["base_clip"]["color_n"] == N_TEST  # every image has a colour
        assert m["nearest_train_pixels_n"] == N_TEST
        for key in ("inception_score", "inception_score_std", "fid", "kid", "kid_std"):
            assert m[key] is None, (name, key)
    # a generator that returns the real images is judged exactly like them, by every judge
    for key in ("attr_acc", "clip_score"):
        assert matched["finetuned"][key] == matched["real"][key]
    assert matched["finetuned"]["nearest_train_pixels"] == pytest.approx(
        matched["real"]["nearest_train_pixels"], abs=1e-6
    )
    assert matched["base"]["nearest_train_pixels"] == pytest.approx(0.0, abs=1e-3)
    # the gain: fine-tuned - base accuracy on the same images, inside its paired interval
    gains = matched["finetuned_minus_base"]["attr_acc"]
    assert set(gains) == JUDGES
    for judge, block in gains.items():
        check_intervals(block)
        for attribute, gain in headline(block).items():
            tuned, base = (matched[m]["attr_acc"][judge][attribute] for m in MODELS)
            assert gain == pytest.approx(tuned - base), (judge, attribute)
            assert block[f"{attribute}_n"] == matched["base"]["attr_acc"][judge][f"{attribute}_n"]
    # the real images' distance, by brute force at the memorisation size
    real = resize_images(read_images(project / "data/subset/test.h5"), 16).astype(float) / 255
    train = resize_images(read_images(project / "data/subset/train.h5"), 16).astype(float) / 255
    rms = np.sqrt(((real[:, None] - train[None]) ** 2).mean(axis=(2, 3, 4))).min(axis=1)
    assert matched["real"]["nearest_train_pixels"] == pytest.approx(rms.mean(), rel=1e-4)
    plots = project / "plots/evaluate"
    for name in ("base", "finetuned", "real"):
        hist = pd.read_csv(plots / f"memorisation_{name}.csv")
        assert list(hist.columns) == ["distance", "share"]
        assert hist["share"].sum() == pytest.approx(1.0)
    assert (plots / "memorisation.png").stat().st_size > 0


def test_grid_is_split_into_seen_and_unseen_combinations(project: Path) -> None:
    run_stage(project, evaluate_params(seen_min_count=1))
    grid = json.loads((project / "metrics/generation.json").read_text())["grid"]
    assert grid["seen_min_count"] == 1
    for model in ("base", "finetuned"):
        assert grid[model]["seen"]["n"] == 2 and grid[model]["unseen"]["n"] == 1
        assert set(grid[model]["seen"]["attr_acc"]) == JUDGES


def test_judges_reproduce_eval_clip_on_the_real_images(project: Path) -> None:
    """The same CLIP, the same real images at the same size, the same rule for sleeve code 4
    (unspecified): evaluate's judges give eval_clip's attribute accuracy."""
    run_stage(project, evaluate_params(pixel_judge=False))
    real = json.loads((project / "metrics/generation.json").read_text())["matched"]["real"]
    clip = json.loads((project / "metrics/clip.json").read_text())
    assert set(real["attr_acc"]) == {"finetuned_clip", "base_clip"}  # no pixel judge
    assert clip["n"] == N_TEST
    assert real["attr_acc"]["finetuned_clip"] == pytest.approx(clip["finetuned"]["attr_acc"])
    assert real["attr_acc"]["base_clip"] == pytest.approx(clip["base"]["attr_acc"])


def test_another_sample_than_the_reference_is_a_clear_error(project: Path, tmp_path) -> None:
    copy = tmp_path / "p"
    shutil.copytree(project, copy)
    params = evaluate_params()
    write_params(copy, params)
    raw = yaml.safe_load((copy / "params.yaml").read_text())
    raw["reference"]["n_images"] = 6
    (copy / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = run(["python", str(STAGE)], copy, check=False, timeout=600, env=OFFLINE)
    assert proc.returncode == 1 and "real.npz: holds another sample" in proc.stderr
    assert "Traceback" not in proc.stderr  # as a stage process reports it: one line


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

    def weights(p: dict, stage: str) -> str:
        fetched.append(p["inception_weights"])
        return p["inception_weights"]

    monkeypatch.setattr(evaluate, "inception_weights", weights)
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
    # each set's IS is the formula's on its own logits, with the stage's splits and seed
    for name, pixels in (("base", images["base"]), ("real", real)):
        logits = extract_features(pixels, StandInInception(), batch_size=8)[0]
        expected = reference_inception_score(logits, 2, int(p["seed"]))
        assert metrics[name]["inception_score"] == pytest.approx(expected[0], rel=1e-6)
        assert metrics[name]["inception_score_std"] == pytest.approx(expected[1], abs=1e-5)


def test_the_default_computes_is_fid_kid_where_the_weights_can_be_fetched(
    project: Path, tmp_path: Path, monkeypatch
) -> None:
    """skip_inception: auto, the default, with the download faked (random Inception-v3
    weights served in place of the release): reference and evaluate fetch them once and
    IS/FID/KID are numbers, the metrics say computed. Never numbers from random weights in a
    real run: here they only show the path works."""
    import evaluate
    import reference
    from fashion.metrics import image as image_metrics

    copy = tmp_path / "p"
    shutil.copytree(project, copy)
    weights = tmp_path / "fetched/inception.pth"
    params = evaluate_params(inception_weights=str(weights))
    assert params["skip_inception"] == "auto"
    write_params(copy, params)
    served = save_random_inception(tmp_path / "served.pth")
    download = Downloads(served, sha256_of(served)[:8])
    monkeypatch.setattr(image_metrics, "download_url_to_file", download)
    monkeypatch.chdir(copy)
    reference.main()
    evaluate.main()
    assert len(download.calls) == 1 and weights.is_file()  # fetched once, then read
    matched = json.loads((copy / "metrics/generation.json").read_text())["matched"]
    assert matched["inception"] == "computed"
    for name in ("base", "finetuned", "real"):
        assert matched[name]["inception_score"] > 0
    assert matched["base"]["fid"] > 0 and matched["base"]["kid"] is not None


def test_reference_without_inception_features_is_a_clear_error(monkeypatch) -> None:
    import evaluate

    monkeypatch.setattr(evaluate, "inception_weights", lambda p, stage: "w.pth")
    monkeypatch.setattr(evaluate, "load_inception", lambda w, device: StandInInception())
    images = {name: np.zeros((2, 8, 8, 3), np.uint8) for name in ("base", "finetuned")}
    p = evaluate_params(skip_inception=False)
    with pytest.raises(PipelineError, match="real.npz: no Inception features"):
        evaluate.inception_metrics(p, images, {"rows": np.arange(2)}, "cpu")


def test_reference_of_another_size_is_a_clear_error() -> None:
    import evaluate

    generated = {name: np.zeros((2, 64, 64, 3), np.uint8) for name in ("base", "finetuned")}
    reference = {"size": np.array(64), "real_size": np.array(128)}
    path = Path("data/reference/real.npz")
    assert evaluate.check_size(generated, reference, path) == 64
    with pytest.raises(PipelineError, match=r"real.npz: real images at 128 px.*64 px"):
        evaluate.check_size(generated, reference | {"size": np.array(128)}, path)
    small = {name: np.zeros((2, 32, 32, 3), np.uint8) for name in generated}
    with pytest.raises(PipelineError, match=r"real.npz: real images at 64 px.*at 32 px"):
        evaluate.check_size(small, reference, path)


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
    assert URL_INCEPTION_V3 in proc.stderr
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
