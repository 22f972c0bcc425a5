"""The eda stage: every file `dvc.yaml` declares as a plot, valid PNGs, DVC renders them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import ROOT, run
from fashion.data.attributes import COLOR, LABEL_MAPS, SEGMENTATION
from fashion.eda.figures import caption_lengths, top_ngrams, value_counts
from subset_writer import make_rows, write_subset

N_TRAIN, N_TEST = 30, 12


def declared_plot_files() -> list[str]:
    """The files under plots/eda that dvc.yaml's top-level `plots:` names."""
    files = []
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        plot_id, props = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        for axis in ("x", "y"):
            if isinstance(props.get(axis), dict):
                files += list(props[axis])
        if not any(isinstance(props.get(a), dict) for a in ("x", "y")):
            files.append(plot_id)
    return sorted({f for f in files if f.startswith("plots/eda/")})


def make_project(root: Path, eda_params: dict | None = None) -> Path:
    """Stage scripts, params, dvc.yaml and DVC config, with a small generated subset."""
    shutil.copytree(ROOT / "stages", root / "stages", ignore=shutil.ignore_patterns("__py*"))
    for name in ("dvc.yaml", ".dvc/config", ".dvc/plots"):
        src, dst = ROOT / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["eda"].update(eda_params or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_subset(root / "data/subset/train.h5", make_rows(N_TRAIN, seed=1))
    write_subset(root / "data/subset/test.h5", make_rows(N_TEST, seed=2, start=N_TRAIN), seed=1)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The labels and eda stages run once on a small subset."""
    root = make_project(tmp_path_factory.mktemp("eda"))
    run(["python", "stages/labels.py"], root)
    run(["python", "stages/eda.py"], root)
    return root


def test_writes_every_declared_plot_file(project: Path) -> None:
    declared = declared_plot_files()
    assert len(declared) == 16  # 5 tables x 2 splits, 2 top-n tables, 4 PNGs
    for split in ("train", "test"):
        for name in (*LABEL_MAPS, "caption_length"):
            assert f"plots/eda/{split}/{name}.csv" in declared
    for name in declared:
        assert (project / name).is_file(), name
    written = {str(p.relative_to(project)) for p in (project / "plots/eda").rglob("*.*")}
    assert written <= {
        *declared,
        "plots/eda/category_color.csv",
        "plots/eda/segmentation_shares.csv",
    }


def test_pngs_are_valid_images(project: Path) -> None:
    for path in (project / "plots/eda").glob("*.png"):
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200, path
            assert np.asarray(image.convert("L")).std() > 5, f"{path} is blank"


def test_count_tables_match_the_labels(project: Path) -> None:
    labels = pd.read_csv(project / "data/labels/labels.csv", keep_default_na=False)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        rows = labels[labels["split"] == split]
        for attr, names in LABEL_MAPS.items():
            table = pd.read_csv(project / f"plots/eda/{split}/{attr}.csv", keep_default_na=False)
            assert table[attr].tolist() == list(names.values())
            expected = rows[f"{attr}_name"].value_counts()
            assert table.set_index(attr)["count"].loc[expected.index].tolist() == list(expected)
            assert table["count"].sum() == n and np.isclose(table["share"].sum(), 1)
        lengths = pd.read_csv(project / f"plots/eda/{split}/caption_length.csv")
        assert lengths["count"].sum() == n
    heat = pd.read_csv(project / "plots/eda/category_color.csv", index_col="category")
    assert heat.to_numpy().sum() == N_TRAIN + N_TEST and list(heat.columns) == list(COLOR.values())
    shares = pd.read_csv(project / "plots/eda/segmentation_shares.csv", index_col="class")
    assert list(shares.index) == list(SEGMENTATION.values())
    assert np.allclose(shares.sum(), 1)


def test_top_words_leave_out_stop_words(project: Path) -> None:
    stop = set(yaml.safe_load((project / "params.yaml").read_text())["eda"]["stop_words"])
    words = pd.read_csv(project / "plots/eda/top_words.csv")
    assert words["word"].iloc[0] in ("lady", "man") and not stop & set(words["word"])
    bigrams = pd.read_csv(project / "plots/eda/top_bigrams.csv")
    assert all(len(b.split()) == 2 and not stop & set(b.split()) for b in bigrams["bigram"])


def test_dvc_plots_show_renders_every_plot(project: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(project, repo)
    run(["git", "init", "-q"], repo)
    shown = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    eda = {k: v for k, v in shown.items() if k.startswith(("eda/", "plots/eda/"))}
    assert len(eda) == 11
    for plot_id, renders in eda.items():
        assert renders and not any(r.get("errors") for r in renders), plot_id
        if plot_id.endswith(".png"):
            assert renders[0]["type"] == "image", plot_id
        else:
            assert renders[0]["content"]["data"]["values"], plot_id


def test_sample_grid_shows_images_upright_in_rgb(tmp_path: Path) -> None:
    """One image, red on top and blue below: a transposed or BGR image would show otherwise."""
    project = make_project(tmp_path, {"grid_size": 1})
    with h5py.File(project / "data/subset/train.h5", "r+") as f:
        images = f["images"][()]
        images[:, :64], images[:, 64:] = (255, 0, 0), (0, 0, 255)
        f["images"][...] = images
    write_subset(project / "data/subset/test.h5", make_rows(0, seed=2))
    run(["python", "stages/labels.py"], project)
    run(["python", "stages/eda.py"], project)
    grid = np.asarray(Image.open(project / "plots/eda/sample_grid.png").convert("RGB")).astype(int)
    red = np.argwhere((np.abs(grid - (255, 0, 0)) < 10).all(-1))
    blue = np.argwhere((np.abs(grid - (0, 0, 255)) < 10).all(-1))
    assert len(red) > 1000 and abs(len(red) - len(blue)) < 0.1 * len(red)
    assert red[:, 0].max() <= blue[:, 0].min() + 2  # red rows above blue rows
    assert abs(red[:, 1].mean() - blue[:, 1].mean()) < 3  # same columns


def test_table_helpers() -> None:
    captions = ["the lady wore a tee.", "the man wore a red long-sleeved tee."]
    lengths = caption_lengths(captions).to_dict("list")
    assert lengths == {"words": [5, 6, 7], "count": [1, 0, 1], "share": [0.5, 0, 0.5]}
    words = top_ngrams(captions, 1, 2, stop_words=["the", "a", "wore"])
    assert words.to_dict("list") == {"word": ["tee", "lady"], "count": [2, 1]}
    bigrams = top_ngrams(captions, 2, 1, stop_words=["the", "a", "wore"])
    assert bigrams.to_dict("list") == {"bigram": ["lady tee"], "count": [1]}
    rows = pd.DataFrame({"gender": [0, 0, 0]})
    counts = value_counts(rows, "gender", LABEL_MAPS["gender"])
    assert counts.to_dict("list") == {
        "gender": ["female", "male"],
        "count": [3, 0],
        "share": [1, 0],
    }


# ------------------------------------------------------------------ bad input

EDA_OUTPUT = "plots/eda"


def assert_failed_cleanly(proc, *words: str, project: Path) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert not (project / EDA_OUTPUT).exists()
    assert not list((project / "plots").glob(".*.tmp"))


def test_missing_label_table(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    proc = run(["python", "stages/eda.py"], project, check=False)
    assert_failed_cleanly(proc, "data/labels/labels.csv", "labels stage", project=project)


def test_subset_missing_a_dataset(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run(["python", "stages/labels.py"], project)
    write_subset(
        project / "data/subset/test.h5",
        make_rows(N_TEST, seed=2, start=N_TRAIN),
        skip=("segmentation",),
    )
    proc = run(["python", "stages/eda.py"], project, check=False)
    assert_failed_cleanly(proc, "data/subset/test.h5", "segmentation", project=project)


def test_missing_subset_file_and_stale_labels(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run(["python", "stages/labels.py"], project)
    write_subset(project / "data/subset/test.h5", make_rows(N_TEST, seed=5, start=500))
    proc = run(["python", "stages/eda.py"], project, check=False)
    assert_failed_cleanly(proc, "data/labels/labels.csv", "data/subset/test.h5", project=project)
    (project / "data/subset/test.h5").unlink()
    proc = run(["python", "stages/eda.py"], project, check=False)
    assert_failed_cleanly(proc, "data/subset/test.h5", "not found", project=project)


def test_bad_grid_size_param(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"grid_size": 0})
    run(["python", "stages/labels.py"], project)
    proc = run(["python", "stages/eda.py"], project, check=False)
    assert_failed_cleanly(proc, "params.yaml", "eda.grid_size", project=project)
