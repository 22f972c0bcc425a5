"""The eda stage: every file `dvc.yaml` declares as a plot, valid PNGs, DVC renders them."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import to_rgba
from PIL import Image

from conftest import ROOT, run
from fashion.data.attributes import CATEGORY, COLOR, LABEL_MAPS, SEGMENTATION
from fashion.data.palette import PALETTE
from fashion.eda.figures import (
    caption_lengths,
    plot_bars,
    plot_word_cloud,
    top_ngrams,
    value_counts,
)
from subset_writer import make_rows, write_subset

N_TRAIN, N_TEST = 30, 12
# Per split: the tables new with the figures; the figures drawn from the train split's tables.
SPLIT_TABLES = ("top_categories", "gender_category", "color_top_categories", "caption_words")
TRAIN_FIGURES = (
    "gender", "sleeve", "top_categories", "color", "gender_category", "color_top_categories",
    "word_cloud",
)  # fmt: skip


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
    assert len(declared) == 31  # 9 tables x 2 splits, 2 top-n tables, 4 + 7 PNGs
    for split in ("train", "test"):
        for name in (*LABEL_MAPS, "caption_length", *SPLIT_TABLES):
            assert f"plots/eda/{split}/{name}.csv" in declared
    for name in TRAIN_FIGURES:
        assert f"plots/eda/{name}.png" in declared
    for name in declared:
        assert (project / name).is_file(), name
    written = {str(p.relative_to(project)) for p in (project / "plots/eda").rglob("*.*")}
    assert written <= {
        *declared,
        "plots/eda/category_color.csv",
        "plots/eda/segmentation_shares.csv",
        "plots/eda/index.md",
    }


def test_pngs_are_valid_images(project: Path) -> None:
    pngs = list((project / "plots/eda").glob("*.png"))
    assert len(pngs) == 11
    for path in pngs:
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


def read_split_table(project: Path, split: str, name: str) -> pd.DataFrame:
    return pd.read_csv(project / f"plots/eda/{split}/{name}.csv", keep_default_na=False)


def test_figure_tables_match_the_labels(project: Path) -> None:
    """The tables the train figures draw, against counts computed here from the labels."""
    labels = pd.read_csv(project / "data/labels/labels.csv", keep_default_na=False)
    stop = set(yaml.safe_load((project / "params.yaml").read_text())["eda"]["stop_words"])
    for split in ("train", "test"):
        rows = labels[labels["split"] == split]
        top = read_split_table(project, split, "top_categories")
        counts = rows["category_name"].value_counts().reindex(CATEGORY.values(), fill_value=0)
        assert top["count"].tolist() == sorted(counts, reverse=True)[:10]
        assert (counts[top["category"]] == top["count"].to_numpy()).all()
        assert np.allclose(top["share"], top["count"] / len(rows))

        pairs = read_split_table(project, split, "gender_category")
        expected = pd.crosstab(rows["gender_name"], rows["category_name"])
        assert pd.crosstab(pairs["gender"], pairs["category"]).equals(expected)

        pairs = read_split_table(project, split, "color_top_categories")
        in_top = rows[rows["category_name"].isin(top["category"])]
        expected = pd.crosstab(in_top["color_name"], in_top["category_name"])
        assert pd.crosstab(pairs["color"], pairs["category"]).equals(expected)

        words = read_split_table(project, split, "caption_words")
        tokens = Counter(w for c in rows["caption"] for w in re.findall(r"[a-z-]+", c))
        assert words.set_index("word")["count"].to_dict() == {
            w: n for w, n in tokens.items() if w not in stop
        }  # the demo vocabulary is smaller than eda.word_cloud_words
        assert words["count"].is_monotonic_decreasing


def test_color_bars_are_drawn_in_their_colour(project: Path, tmp_path: Path) -> None:
    colors = read_split_table(project, "train", "color")
    colors.loc[colors["color"] == "red", "count"] = 5  # red drawn even if the draw has none
    fig = plot_bars(colors, "color", tmp_path / "color.png", "colour (train split)", palette=True)
    faces: dict[str, set] = {}
    for patch in fig.axes[0].patches:
        if patch.get_gid():
            faces.setdefault(patch.get_gid(), set()).add(patch.get_facecolor())
    assert faces["red"] == {to_rgba(PALETTE["red"])}
    assert faces["white"] == {to_rgba(PALETTE["white"])}
    assert len(faces["multicolor"]) >= 3  # a stripe of several colours
    assert fig.axes[0].get_title() and fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    image = np.asarray(Image.open(tmp_path / "color.png").convert("RGB")).astype(int)
    red = np.round(np.array(PALETTE["red"]) * 255)
    assert (np.abs(image - red) <= 2).all(-1).sum() > 100  # the red bar's pixels


def test_word_cloud_leaves_out_stop_words(project: Path, tmp_path: Path) -> None:
    labels = pd.read_csv(project / "data/labels/labels.csv", keep_default_na=False)
    captions = labels.loc[labels["split"] == "train", "caption"]
    stop = yaml.safe_load((project / "params.yaml").read_text())["eda"]["stop_words"]
    assert {"the", "a", "wearing"} & set(" ".join(captions).split())  # frame words to drop
    words = top_ngrams(captions, 1, 100, stop)
    cloud = plot_word_cloud(words, tmp_path / "cloud.png", "words (train split)", seed=0)
    assert cloud.words_ and not set(cloud.words_) & set(stop)
    assert set(cloud.words_) == set(read_split_table(project, "train", "caption_words")["word"])
    assert {"lady", "man"} & set(cloud.words_)


def test_index_lists_every_figure_with_its_reading(project: Path) -> None:
    index = (project / "plots/eda/index.md").read_text()
    linked = set(re.findall(r"\]\(([^)]+\.png)\)", index))
    pngs = {p.name for p in (project / "plots/eda").rglob("*.png")}
    assert linked == pngs
    labels = pd.read_csv(project / "data/labels/labels.csv", keep_default_na=False)
    shares = labels.loc[labels["split"] == "train", "gender_name"].value_counts(normalize=True)
    reading = ", ".join(f"{g} {s:.0%}" for g, s in shares.items())
    assert f"(gender.png): images per gender: {reading} (train split)" in index


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
    assert len(eda) == 22
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


@pytest.mark.parametrize("key", ["grid_size", "word_cloud_words"])
def test_bad_size_param(tmp_path: Path, key: str) -> None:
    """Any stage checks all of params.yaml first: labels stops on eda's bad size too."""
    project = make_project(tmp_path, {key: 0})
    for stage in ("labels", "eda"):
        proc = run(["python", f"stages/{stage}.py"], project, check=False)
        assert_failed_cleanly(proc, "params.yaml", f"eda.{key}: must be ≥ 1", project=project)
