"""The reference stages on a small project: the Inception reference (weights fetched before
any training, one pass per image) and the CLIP reference of the real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run
from fashion.clip.models import build_tiny_clip, embed_images, load_clip
from fashion.core.stage import PipelineError
from fashion.data.subset import read_images, sample_rows
from fashion.metrics.image import (
    INCEPTION_FETCH_COMMAND,
    URL_INCEPTION_V3,
    extract_features,
    load_arrays,
    load_inception,
    resize_images,
)
from subset_writer import SIZE, make_rows, write_subset
from test_evaluate import OFFLINE
from test_image_metrics import TINY, save_random_inception

N_TRAIN, N_TEST = 20, 10
INCEPTION, CLIP = "data/reference/inception.npz", "data/reference/clip.npz"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reference")
    train_rows, test_rows = make_rows(N_TRAIN, seed=0), make_rows(N_TEST, seed=1, start=N_TRAIN)
    write_subset(root / "data/subset/train.h5", train_rows, seed=0)
    write_subset(root / "data/subset/test.h5", test_rows, seed=1)
    model, processor = build_tiny_clip([r["caption"] for r in train_rows], TINY, seed=0)
    model.save_pretrained(root / "models/clip")
    processor.save_pretrained(root / "models/clip")
    save_random_inception(root / "inception.pth")
    return root


def write_params(root, resolution: int = 48, **evaluate) -> None:
    params = {
        "generate": {"resolution": resolution},
        "reference": {"seed": 0, "n_real": 6, "n_train": "all", "batch_size": 4},
        "evaluate": {"skip_inception": True, "inception_weights": None} | evaluate,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_in(root, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    import embed_reference
    import reference

    monkeypatch.chdir(root)
    {"reference": reference, "embed_reference": embed_reference}[stage].main()


def real_sample(root, size: int) -> tuple[np.ndarray, np.ndarray]:
    rows = sample_rows(N_TEST, 6, seed=0)
    return rows, resize_images(read_images(root / "data/subset/test.h5", rows), size)


def test_skipped_inception_records_sample_and_size_and_fetches_nothing(
    project, monkeypatch
) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("fashion.metrics.image.download_url_to_file", no_download)
    write_params(project, resolution=48)
    run_in(project, monkeypatch, "reference")
    ref = load_arrays(project / INCEPTION, (), "reference")
    assert set(ref) == {"test_rows", "size", "real_size"}
    np.testing.assert_array_equal(ref["test_rows"], sample_rows(N_TEST, 6, seed=0))
    assert (int(ref["size"]), int(ref["real_size"])) == (48, SIZE)  # min(resolution, real)
    write_params(project, resolution=2 * SIZE)
    run_in(project, monkeypatch, "reference")
    assert int(load_arrays(project / INCEPTION, (), "reference")["size"]) == SIZE


def test_inception_reference_is_one_pass_over_the_resized_real_sample(project, monkeypatch) -> None:
    weights = project / "inception.pth"
    write_params(project, resolution=48, skip_inception=False, inception_weights=str(weights))
    run_in(project, monkeypatch, "reference")
    ref = load_arrays(project / INCEPTION, ("logits", "pool"), "reference")
    rows, images = real_sample(project, 48)
    logits, pool = extract_features(images, load_inception(weights), batch_size=4)
    np.testing.assert_array_equal(ref["test_rows"], rows)
    assert ref["logits"].shape == (6, 1008) and ref["pool"].shape == (6, 2048)
    torch.testing.assert_close(torch.from_numpy(ref["logits"]), logits)
    torch.testing.assert_close(torch.from_numpy(ref["pool"]), pool)


def test_clip_reference_embeds_the_real_and_train_samples(project, monkeypatch) -> None:
    write_params(project, resolution=48)
    run_in(project, monkeypatch, "embed_reference")
    ref = load_arrays(project / CLIP, ("test_rows", "train_rows", "size"), "embed_reference")
    rows, images = real_sample(project, 48)
    np.testing.assert_array_equal(ref["test_rows"], rows)
    np.testing.assert_array_equal(ref["train_rows"], np.arange(N_TRAIN))
    assert int(ref["size"]) == 48
    model, processor = load_clip(project / "models/clip")
    train = resize_images(read_images(project / "data/subset/train.h5"), 48)
    for key, expected in (("test", images), ("train", train)):
        torch.testing.assert_close(
            torch.from_numpy(ref[key]), embed_images(model, processor, expected, 4)
        )


def test_too_large_a_sample_names_the_param(project, monkeypatch) -> None:
    write_params(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["reference"]["n_train"] = N_TRAIN + 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match=r"params.yaml: reference.n_train: sample size 21"):
        run_in(project, monkeypatch, "embed_reference")


def test_offline_machine_fails_at_once_with_the_fetch_command(project, tmp_path) -> None:
    missing = tmp_path / "weights.pth"
    write_params(project, skip_inception=False, inception_weights=str(missing))
    (project / INCEPTION).unlink(missing_ok=True)
    proc = run(["python", str(ROOT / "stages/reference.py")], project, check=False, env=OFFLINE)
    assert proc.returncode == 1
    # the message begins a line (a library's import-time warning may come first)
    assert f"\nerror: {missing}: Inception-v3 weights not found" in "\n" + proc.stderr
    assert INCEPTION_FETCH_COMMAND in proc.stderr and URL_INCEPTION_V3 in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / INCEPTION).exists() and not missing.exists()


def test_reference_runs_before_any_training(pipeline) -> None:
    """`dvc repro` reaches the reference stage (and its download) before training starts."""
    out = run(["dvc", "repro", "--dry", "--force"], pipeline).stdout
    order = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert order.index("reference") < min(order.index(s) for s in ("finetune_clip", "base_sd"))
    assert order.index("finetune_clip") < order.index("embed_reference") < order.index("evaluate")
