"""Label maps pinned against the real annotations; caption parsing; the labels stage."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from conftest import ROOT, run
from fashion.data.attributes import CATEGORY, COLOR, GENDER, LABEL_MAPS, SLEEVE
from fashion.data.captions import (
    KEYWORDS,
    MULTICOLOR,
    caption_category,
    caption_color,
    caption_gender,
    caption_keywords,
    caption_sleeve,
    compose_caption,
    folder_category,
)
from subset_writer import make_rows, write_subset

PARSERS = {
    "gender": caption_gender,
    "color": caption_color,
    "sleeve": caption_sleeve,
    "category": caption_category,
}
MAT_FIELDS = {"gender": "gender_", "color": "color_", "sleeve": "sleeve_", "category": "cate_new"}


# ------------------------------------------------------------------ the real annotations


@pytest.fixture(scope="module")
def real(real_annotations: Path) -> dict:
    """Captions, image names and codes of all 78,979 rows of language_original.mat."""
    mat = scipy.io.loadmat(real_annotations / "language_original.mat")
    data = {
        "caption": [str(cell[0][0]) for cell in mat["engJ"]],
        "name": [str(cell[0][0]) for cell in mat["nameList"]],
        **{attr: mat[field].ravel().astype(int) for attr, field in MAT_FIELDS.items()},
    }
    data["parsed"] = {attr: [parse(c) for c in data["caption"]] for attr, parse in PARSERS.items()}
    return data


def test_real_file_has_every_row_and_code(real: dict) -> None:
    assert len(real["caption"]) == 78_979
    for attr, names in LABEL_MAPS.items():
        assert set(real[attr]) == set(names), attr


def test_category_is_the_item_folder_in_every_row(real: dict) -> None:
    folders = [folder_category(name) for name in real["name"]]
    assert folders == real["category"].tolist()


def test_each_code_is_the_word_its_captions_name_most(real: dict) -> None:
    """The map derivation: among a code's rows, the captions mostly name that code's word."""
    for attr in PARSERS:
        for code in LABEL_MAPS[attr]:
            named = Counter(
                p for p, c in zip(real["parsed"][attr], real[attr], strict=True) if c == code
            )
            named.pop(None, None)
            if attr == "sleeve" and code == 4:
                assert not named, "unspecified sleeve rows name a sleeve"
                continue
            assert named.most_common(1)[0][0] == code, (attr, LABEL_MAPS[attr][code], named)


@pytest.mark.parametrize(
    ("attr", "min_named", "min_rate"),
    [
        # measured: 78,966 of 78,968; 78,388 of 78,389; 78,168 of 78,168; 78,693 of 78,793
        ("gender", 78_900, 0.9999),
        ("color", 78_300, 0.9999),
        ("sleeve", 78_100, 1.0),
        ("category", 78_700, 0.998),
    ],
)
def test_codes_agree_with_caption_words(
    real: dict, attr: str, min_named: int, min_rate: float
) -> None:
    pairs = [(p, c) for p, c in zip(real["parsed"][attr], real[attr], strict=True) if p is not None]
    agree = sum(p == c for p, c in pairs)
    assert len(pairs) >= min_named
    assert agree / len(pairs) >= min_rate, (attr, agree, len(pairs))


def test_unspecified_sleeve_names_no_sleeve_word(real: dict) -> None:
    rows = [c for c, s in zip(real["caption"], real["sleeve"], strict=True) if s == 4]
    assert len(rows) == 629
    assert all(caption_sleeve(c) is None for c in rows)
    assert not any(w in c for c in rows for w in ("long-sleeved", "short-sleeved", "sleeveless"))


@pytest.mark.parametrize("spelling", ["multicolor", "multi-color", "multi-colored", "multicolored"])
def test_multicolour_spellings_mean_code_17(real: dict, spelling: str) -> None:
    codes = [
        c
        for caption, c in zip(real["caption"], real["color"], strict=True)
        if spelling in caption.replace(".", " ").replace(",", " ").split()
    ]
    assert len(codes) > 1_000
    assert Counter(codes)[MULTICOLOR] / len(codes) > 0.999


def test_keyword_flags_are_frequent_in_real_captions(real: dict) -> None:
    counts = Counter()
    for caption in real["caption"]:
        counts.update(k for k, v in caption_keywords(caption).items() if v)
    assert set(counts) == set(KEYWORDS)
    assert min(counts.values()) >= 40, counts
    assert counts["letters"] > 2_000


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("the lady wore a gray long-sleeved tee.", 12),
        ("the lady was wearing a multi-colored sleeveless dress.", MULTICOLOR),
        ("the lady wore a blue and white sleeveless dress.", MULTICOLOR),
        ("the man wore a colorful tee.", MULTICOLOR),
        ("the lady was wearing a sleeveless romper.", None),
    ],
)
def test_caption_color(caption: str, expected: int | None) -> None:
    assert caption_color(caption) == expected


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("the lady wore a long-sleeved blouse.", 1),
        ("the man was wearing a jacket with long sleeves.", 1),
        ("the man was wearing a long, sleeved sweater.", 1),
        ("the lady wore a blouse with a white short sleeve.", 2),
        ("the lady is wearing a white sleeveless blouse.", 3),
        ("the lady wore a long-sleeved dress with short-sleeved flowers.", None),
        ("the lady wore a gray tee with letters.", None),
    ],
)
def test_caption_sleeve(caption: str, expected: int | None) -> None:
    assert caption_sleeve(caption) == expected


def test_caption_category_gender_and_folder() -> None:
    assert caption_category("the lady wore multicolored sleeveless tops.") == 14
    assert caption_category("the woman wore a blazer with a long blouse.") == 1
    assert caption_category("the lady wears a beige long sleeve.") is None
    assert caption_gender("the woman was wearing a tee.") == 0
    assert caption_gender("the boy wore a tee.") == 1
    assert caption_gender("is wearing a dress.") is None
    assert folder_category("img/Sheer_Pleated-Front_Blouse/img_00000001.jpg") == 2
    assert folder_category("img/Hooded_Utility_Parka/img_00000002.jpg") == 9
    assert folder_category("img_00000001.jpg") is None


def test_caption_keywords() -> None:
    flags = caption_keywords("the lady is wearing a white short-sleeved tee printed with letters.")
    assert flags["letters"] and flags["printed"]
    assert not any(v for k, v in flags.items() if k not in ("letters", "printed"))


def test_parsers_read_back_every_composed_caption() -> None:
    for g in GENDER:
        for color in COLOR:
            for sleeve in SLEEVE:
                for category in CATEGORY:
                    caption = compose_caption(g, color, sleeve, category)
                    assert caption_gender(caption) == g
                    assert caption_color(caption) == color
                    assert caption_sleeve(caption) == (None if sleeve == 4 else sleeve)
                    assert caption_category(caption) == category


# ------------------------------------------------------------------ the labels stage


def stage_project(tmp_path: Path, n_train: int = 30, n_test: int = 10) -> Path:
    """The stage scripts and params with a small generated subset, no DVC."""
    shutil.copytree(ROOT / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    write_subset(tmp_path / "data/subset/train.h5", make_rows(n_train, seed=1))
    write_subset(tmp_path / "data/subset/test.h5", make_rows(n_test, seed=2, start=n_train))
    return tmp_path


def run_stage(project: Path, name: str, check: bool = True):
    return run(["python", f"stages/{name}.py"], project, check=check)


def test_labels_stage_writes_table_maps_and_metrics(tmp_path: Path) -> None:
    project = stage_project(tmp_path)
    rows = make_rows(30, seed=1) + make_rows(10, seed=2, start=30)
    rows[0]["caption"] = "the lady is wearing a white sleeveless tee printed with letters."
    write_subset(project / "data/subset/train.h5", rows[:30])
    run_stage(project, "labels")

    table = pd.read_csv(project / "data/labels/labels.csv", keep_default_na=False)
    assert len(table) == 40
    assert table["split"].tolist() == ["train"] * 30 + ["test"] * 10
    assert table["index"].tolist() == [r["index"] for r in rows]
    for attr, names in LABEL_MAPS.items():
        assert table[attr].tolist() == [r[attr] for r in rows]
        assert table[f"{attr}_name"].tolist() == [names[r[attr]] for r in rows]
    assert table.loc[0, "kw_letters"] and table.loc[0, "kw_printed"]
    assert not table.loc[1:, [f"kw_{k}" for k in KEYWORDS]].to_numpy().any()

    maps = json.loads((project / "data/labels/label_maps.json").read_text())
    assert maps["category"]["1"] == "blazer" and maps["gender"] == {"0": "female", "1": "male"}
    assert {k: {int(c): n for c, n in m.items()} for k, m in maps.items()} == LABEL_MAPS

    metrics = json.loads((project / "metrics/labels.json").read_text())
    assert metrics["rows"] == 40
    assert metrics["category_folder"] == {"named": 40, "agree": 40, "rate": 1.0}
    # row 0's caption was replaced: it names colour white and sleeveless, whatever its codes
    expected_color = int(rows[0]["color"] == 3) + 39
    assert metrics["color"]["agree"] == expected_color
    assert metrics["sleeve"]["named"] == sum(r["sleeve"] != 4 for r in rows[1:]) + 1


def assert_failed_cleanly(proc, *words: str, project: Path, outputs: tuple[str, ...]) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    for out in outputs:
        assert not (project / out).exists(), out
    leftovers = [p.name for p in project.rglob(".*.tmp")]
    assert not leftovers, leftovers


LABEL_OUTPUTS = ("data/labels", "metrics/labels.json")


def test_labels_missing_subset_file(tmp_path: Path) -> None:
    project = stage_project(tmp_path)
    (project / "data/subset/test.h5").unlink()
    proc = run_stage(project, "labels", check=False)
    assert_failed_cleanly(proc, "data/subset/test.h5", project=project, outputs=LABEL_OUTPUTS)


def test_labels_subset_missing_a_dataset(tmp_path: Path) -> None:
    project = stage_project(tmp_path)
    write_subset(project / "data/subset/train.h5", make_rows(5, seed=3), skip=("caption",))
    proc = run_stage(project, "labels", check=False)
    assert_failed_cleanly(
        proc, "data/subset/train.h5", "caption", project=project, outputs=LABEL_OUTPUTS
    )


def test_labels_unknown_code(tmp_path: Path) -> None:
    project = stage_project(tmp_path)
    rows = make_rows(5, seed=3)
    rows[2]["color"] = 18
    write_subset(project / "data/subset/train.h5", rows)
    proc = run_stage(project, "labels", check=False)
    assert_failed_cleanly(
        proc, "data/subset/train.h5", "color", "18", project=project, outputs=LABEL_OUTPUTS
    )


def test_labels_failure_keeps_previous_outputs(tmp_path: Path) -> None:
    project = stage_project(tmp_path)
    run_stage(project, "labels")
    before = (project / "data/labels/labels.csv").read_bytes()
    (project / "data/subset/train.h5").write_bytes(b"not hdf5")
    proc = run_stage(project, "labels", check=False)
    assert proc.returncode == 1 and "data/subset/train.h5" in proc.stderr
    assert (project / "data/labels/labels.csv").read_bytes() == before
    assert np.isclose(json.loads((project / "metrics/labels.json").read_text())["color"]["rate"], 1)
