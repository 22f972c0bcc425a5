"""The reference stage on a small project: the matched sample of the evaluated split, its
Inception features (weights fetched before any training, one pass per image) and the pixel
memorisation reference of the training images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run
from fashion.core.stage import PipelineError
from fashion.data.splits import validation_rows
from fashion.data.subset import read_images, read_table, sample_rows
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
from test_image_metrics import save_random_inception

N_TRAIN, N_TEST = 20, 10
REFERENCE = "data/reference/real.npz"
KEYS = {"split", "rows", "size", "real_size", "train_pixels"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reference")
    train_rows, test_rows = make_rows(N_TRAIN, seed=0), make_rows(N_TEST, seed=1, start=N_TRAIN)
    write_subset(root / "data/subset/train.h5", train_rows, seed=0)
    write_subset(root / "data/subset/test.h5", test_rows, seed=1)
    save_random_inception(root / "inception.pth")
    return root


def write_params(root, resolution: int = 48, split: str = "test", **evaluate) -> None:
    params = {
        "split": {"validation_images": 3, "seed": 0, "evaluate": split},
        "generate": {"resolution": resolution},
        "reference": {
            "seed": 0, "n_images": 6, "n_train_images": "all", "memorisation_size": 16,
            "batch_size": 4,
        },
        "evaluate": {"skip_inception": True, "inception_weights": None} | evaluate,
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_in(root, monkeypatch: pytest.MonkeyPatch) -> None:
    import reference

    monkeypatch.chdir(root)
    reference.main()


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
    run_in(project, monkeypatch)
    ref = load_arrays(project / REFERENCE, (), "reference")
    assert set(ref) == KEYS and str(ref["split"]) == "test"
    np.testing.assert_array_equal(ref["rows"], sample_rows(N_TEST, 6, seed=0))
    assert (int(ref["size"]), int(ref["real_size"])) == (48, SIZE)  # min(resolution, real)
    # memorisation: every train image (validation included) at 16 px
    train = resize_images(read_images(project / "data/subset/train.h5"), 16)
    np.testing.assert_array_equal(ref["train_pixels"], train)
    write_params(project, resolution=2 * SIZE)
    run_in(project, monkeypatch)
    assert int(load_arrays(project / REFERENCE, (), "reference")["size"]) == SIZE


def test_validation_split_reference(project, monkeypatch) -> None:
    """On the validation split the sample is validation rows of train.h5, and the
    memorisation reference is the rest of train."""
    write_params(project, split="validation")
    run_in(project, monkeypatch)
    ref = load_arrays(project / REFERENCE, (), "reference")
    names = read_table(project / "data/subset/train.h5")["name"].tolist()
    val = validation_rows(names, 3, seed=0)
    assert str(ref["split"]) == "validation"
    assert set(ref["rows"]) == set(val)  # n_images 6 >= the validation split: all of it
    rest = np.setdiff1d(np.arange(N_TRAIN), val)
    train = resize_images(read_images(project / "data/subset/train.h5", rest), 16)
    np.testing.assert_array_equal(ref["train_pixels"], train)


def test_inception_reference_is_one_pass_over_the_resized_real_sample(project, monkeypatch) -> None:
    weights = project / "inception.pth"
    write_params(project, resolution=48, skip_inception=False, inception_weights=str(weights))
    run_in(project, monkeypatch)
    ref = load_arrays(project / REFERENCE, ("logits", "pool"), "reference")
    rows, images = real_sample(project, 48)
    logits, pool = extract_features(images, load_inception(weights), batch_size=4)
    np.testing.assert_array_equal(ref["rows"], rows)
    assert ref["logits"].shape == (6, 1008) and ref["pool"].shape == (6, 2048)
    torch.testing.assert_close(torch.from_numpy(ref["logits"]), logits)
    torch.testing.assert_close(torch.from_numpy(ref["pool"]), pool)


def test_too_large_a_sample_names_the_param(project, monkeypatch) -> None:
    write_params(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["reference"]["n_train_images"] = N_TRAIN + 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    message = r"params.yaml: reference.n_train_images: sample size 21"
    with pytest.raises(PipelineError, match=message):
        run_in(project, monkeypatch)


def test_offline_machine_fails_at_once_with_the_fetch_command(project, tmp_path) -> None:
    missing = tmp_path / "weights.pth"
    write_params(project, skip_inception=False, inception_weights=str(missing))
    (project / REFERENCE).unlink(missing_ok=True)
    proc = run(["python", str(ROOT / "stages/reference.py")], project, check=False, env=OFFLINE)
    assert proc.returncode == 1
    # the message begins a line (a library's import-time warning may come first)
    assert f"\nerror: {missing}: Inception-v3 weights not found" in "\n" + proc.stderr
    assert INCEPTION_FETCH_COMMAND in proc.stderr and URL_INCEPTION_V3 in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / REFERENCE).exists() and not missing.exists()


def test_reference_runs_before_any_training(pipeline) -> None:
    """`dvc repro` reaches the reference stage (and its download) before training starts."""
    out = run(["dvc", "repro", "--dry", "--force"], pipeline).stdout
    order = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert order.index("reference") < min(order.index(s) for s in ("finetune_clip", "base_sd"))
    assert order.index("generate") < order.index("evaluate")
