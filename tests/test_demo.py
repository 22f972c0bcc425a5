"""The demo benchmark: drawings show their attributes, captions follow the real patterns."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml

from fashion.data.attributes import CATEGORY, COLOR, SLEEVE
from fashion.data.decrypt import extracted_member
from fashion.data.release import (
    ANNOTATIONS_REL,
    SPLIT_REL,
    ZIP_REL,
    open_g2,
    read_annotations,
    read_g2_rows,
    read_split,
)
from fashion.demo.captions import COLOR_VARIANTS, GENDER_VARIANTS, caption_model, codej_words
from fashion.demo.codes import folder_order, interleaved_split, pair_test_images, sample_codes
from fashion.demo.drawing import ARMS, FACE, HAIR, LEGS, LOWER, PALETTE, UPPER, draw_garments

ROOT = Path(__file__).resolve().parents[1]
MULTICOLOR, UNSPECIFIED = 17, 4
PALETTE_RGB = np.array([PALETTE[COLOR[c]] for c in range(1, 17)])


def draw(gender=0, color=2, sleeve=1, category=13, n=8, seed=0):
    codes = [np.full(n, x) for x in (gender, color, sleeve, category)]
    return draw_garments(*codes, np.random.default_rng(seed))


def garment_colour_code(image: np.ndarray, seg: np.ndarray) -> int:
    """The palette colour nearest to the median colour of the upper-clothes pixels."""
    median = np.median(image[seg == UPPER], axis=0)
    return int(np.argmin(((PALETTE_RGB - median) ** 2).sum(1))) + 1


def test_shapes_dtypes_and_range():
    images, seg = draw(n=5)
    assert images.shape == (5, 128, 128, 3) and images.dtype == np.float32
    assert seg.shape == (5, 128, 128) and seg.dtype == np.uint8
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("color", range(1, 17))
def test_garment_shows_its_colour(color):
    rng = np.random.default_rng(color)
    n = 19
    codes = rng.integers(0, 2, n), np.full(n, color), rng.integers(1, 4, n), np.arange(1, 20)
    images, seg = draw_garments(*codes, rng)
    found = [garment_colour_code(i, s) for i, s in zip(images, seg, strict=True)]
    assert Counter(found)[color] >= 17, (COLOR[color], [COLOR[c] for c in found])


def test_multicolor_is_a_pattern_of_several_colours():
    images, seg = draw(color=MULTICOLOR, category=16, n=6)
    for image, s in zip(images, seg, strict=True):
        pixels = np.round(image[s == UPPER] * 20)
        colours, counts = np.unique(pixels, axis=0, return_counts=True)
        assert (counts > 0.1 * len(pixels)).sum() >= 3


def test_sleeve_length_covers_the_arms():
    arms, cloth = {}, {}
    for sleeve in (1, 2, 3):
        _, seg = draw(sleeve=sleeve, seed=3)  # same seed: same jitter, only the sleeve differs
        arms[sleeve], cloth[sleeve] = (seg == ARMS).sum(), (seg == UPPER).sum()
    assert arms[1] < arms[2] < arms[3]
    assert cloth[1] > cloth[2] > cloth[3]


def test_segmentation_classes_match_the_figure():
    _, seg = draw(category=13)  # tee over trousers or a skirt
    for label in (0, HAIR, FACE, UPPER, LOWER, ARMS):
        assert (seg == label).any(axis=(1, 2)).all(), label
    _, seg = draw(category=19)  # a romper: shorts, bare legs
    assert (seg == LEGS).any(axis=(1, 2)).all() and (seg == LOWER).any(axis=(1, 2)).all()
    _, seg = draw(category=16)  # a dress: bare legs, no lower clothes
    assert not (seg == LOWER).any() and (seg == LEGS).any(axis=(1, 2)).all()
    images, seg = draw(category=17, color=1)  # a jumpsuit: the lower clothes are the garment
    lower = images[seg == LOWER]
    assert np.abs(np.median(lower, axis=0) - PALETTE["red"]).max() < 0.15


def test_genders_differ():
    _, lady = draw(gender=0, seed=5)
    _, man = draw(gender=1, seed=5)
    assert (lady == HAIR).sum() > 2 * (man == HAIR).sum()
    # broader shoulders: the man's upper body is wider at the chest
    assert (man[:, 40:50] == UPPER).sum() > (lady[:, 40:50] == UPPER).sum()


def test_category_silhouettes_are_distinct():
    masks = {}
    for category in CATEGORY:
        _, seg = draw(category=category, sleeve=3, seed=7)
        masks[category] = seg == UPPER
    for a in CATEGORY:
        for b in CATEGORY:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.97, (CATEGORY[a], CATEGORY[b], iou)


def test_drawing_is_seeded():
    a, sa = draw(seed=11)
    b, sb = draw(seed=11)
    c, _ = draw(seed=12)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # jitter: not identical copies


def _pattern_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", re.sub(r"\ba (?=\{)", "{article} ", pattern))
    words = {
        "{article}": "an?",
        "{gender}": "(?P<gender>[a-z]+)",
        "{color}": "(?P<color>[a-z-]+)",
        "{sleeve}": "(?P<sleeve>[a-z-]+)",
        "{category}": "(?P<category>[a-z]+)",
    }
    return re.compile("".join(words.get(p, re.escape(p)) for p in parts) + "$")


def test_captions_follow_the_real_patterns_and_name_the_codes():
    model = caption_model()
    rng = np.random.default_rng(0)
    codes = sample_codes(2000, rng)
    captions = model.sample(*(codes[k] for k in ("gender", "color", "sleeve", "category")), rng)
    regexes = {s: [_pattern_regex(p) for p in ps] for s, (ps, _) in model.patterns.items()}
    for i, caption in enumerate(captions):
        g, c, s, k = (int(codes[f][i]) for f in ("gender", "color", "sleeve", "category"))
        match = next(m for r in regexes[s] if (m := r.match(caption)))
        assert match["gender"] in GENDER_VARIANTS[g]
        assert match["color"] in COLOR_VARIANTS.get(COLOR[c], (COLOR[c],))
        assert match["category"] == CATEGORY[k]
        if "sleeve" in match.groupdict():
            assert match["sleeve"] == SLEEVE[s] != "unspecified"
        if s == UNSPECIFIED:
            assert not any(w in caption for w in ("long-sleeved", "short-sleeved", "sleeveless"))
    # the real frequencies: most captions use "lady", the top pattern dominates
    assert Counter(c.split()[1] for c in captions)["lady"] > 0.8 * len(captions)


def _phrasings_per_outfit(codes: list[np.ndarray], captions: list[str]) -> int:
    """The most distinct captions any one (gender, colour, sleeve, category) has."""
    per_outfit = defaultdict(set)
    for outfit, caption in zip(map(tuple, np.stack(codes, 1).tolist()), captions, strict=True):
        per_outfit[outfit].add(caption)
    return max(len(texts) for texts in per_outfit.values())


def test_outfit_phrasing_gives_identical_outfits_one_caption():
    model = caption_model()
    codes = sample_codes(3000, np.random.default_rng(0))
    rows = [codes[k] for k in ("gender", "color", "sleeve", "category")]
    captions = model.sample(*rows, np.random.default_rng(1), phrasing="outfit")
    assert _phrasings_per_outfit(rows, captions) == 1
    # seeded, and the phrasings still vary across outfits
    assert captions == model.sample(*rows, np.random.default_rng(1), phrasing="outfit")
    assert len({c.split()[1] for c in captions}) > 1
    # per image, one outfit gets several phrasings
    by_image = model.sample(*rows, np.random.default_rng(1), phrasing="image")
    assert _phrasings_per_outfit(rows, by_image) > 1
    with pytest.raises(ValueError, match="phrasing"):
        model.sample(*rows, np.random.default_rng(1), phrasing="per-word")


def test_word_ids_use_the_vocabulary():
    model = caption_model()
    words = {i: w for w, i in model.vocabulary.items()}
    assert len(words) == len(model.vocabulary)  # one word per id
    caption = "the lady was wearing an orange long-sleeved blouse."
    ids = model.word_ids(caption)
    assert len(ids) == 8 and [words[i] for i in ids] == codej_words(caption)


def test_split_is_interleaved_with_the_real_ratio():
    train, test = interleaved_split(20_000, np.random.default_rng(0))
    assert test[0] == 0 and len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == 20_000
    assert abs(len(test) / 20_000 - 8979 / 78979) < 0.02
    assert test[-1] > 19_000  # spread over the whole range
    outfit = np.random.default_rng(1).integers(0, 50, 20_000)
    pairs = pair_test_images(test, outfit, np.random.default_rng(2))
    assert np.isin(pairs, test).all() and (outfit[pairs] != outfit[test]).all()


def test_folder_names_follow_the_real_pattern():
    category = sample_codes(500, np.random.default_rng(0))["category"]
    order, names = folder_order(category, np.random.default_rng(1))
    assert sorted(order) == list(range(500)) and len(names) == 500
    for name, cat in zip(names, category[order], strict=True):
        match = re.fullmatch(r"img/([A-Za-z0-9_\-']+)/img_(\d{8})\.jpg", name)
        assert match and match[1].split("_")[-1].lower() == CATEGORY[int(cat)]


# ----------------------------------------------------------------- assets vs real annotations


def test_assets_agree_with_the_real_annotations(real_annotations: Path):
    mat = scipy.io.loadmat(real_annotations / "language_original.mat")
    codes = np.stack([mat[k][:, 0] for k in ("gender_", "color_", "sleeve_", "cate_new")], 1)
    joint = np.loadtxt(
        ROOT / "stages/fashion/demo/assets/joint_counts.csv", delimiter=",", skiprows=1, dtype=int
    )
    real = Counter(map(tuple, codes.astype(int).tolist()))
    assert {tuple(r[:4]): r[4] for r in joint.tolist()} == real
    model = caption_model()
    captions = [str(c[0]) for c in mat["engJ"][:, 0]]
    for caption, ids in zip(captions, mat["codeJ"][:, 0], strict=True):
        assert model.word_ids(caption).tolist() == np.ravel(ids).tolist(), caption
    regexes = {s: [_pattern_regex(p) for p in ps] for s, (ps, _) in model.patterns.items()}
    covered = sum(
        any(r.match(c) for r in regexes[int(s)]) for c, s in zip(captions, codes[:, 2], strict=True)
    )
    assert covered >= 0.85 * len(captions)


# ------------------------------------------------------------------------------ the stage


def run_stage(tmp_path: Path, **demo) -> subprocess.CompletedProcess:
    shutil.copytree(ROOT / "stages", tmp_path / "stages", dirs_exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["demo"].update(demo)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "stages/demo_benchmark.py"]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)


def test_stage_drawings_do_not_depend_on_the_process_count():
    import demo_benchmark

    codes = sample_codes(300, np.random.default_rng(0))
    one, two = (
        list(demo_benchmark.image_batches(codes, np.random.SeedSequence(1), processes=p))
        for p in (1, 2)
    )
    assert len(one) == len(two) == 3  # batches of 128, in order
    for (images, seg), (images_2, seg_2) in zip(one, two, strict=True):
        assert np.array_equal(images, images_2) and np.array_equal(seg, seg_2)
    # each batch is drawn from its own child of the seed, not from copies of one generator
    last = {k: v[256:] for k, v in codes.items()}
    third_seed = np.random.SeedSequence(1).spawn(3)[2]
    assert np.array_equal(one[2][0], demo_benchmark.draw_batch(last, third_seed)[0])


@pytest.mark.parametrize("encryption", ["zipcrypto", "aes"])
def test_stage_writes_the_real_layout(tmp_path: Path, encryption: str):
    proc = run_stage(tmp_path, n_images=60, encryption=encryption, password="pw")
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "data/demo_benchmark"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        a.as_posix() for a in sorted((ANNOTATIONS_REL, SPLIT_REL, ZIP_REL))
    ]
    anno = read_annotations(root / ANNOTATIONS_REL)
    split = read_split(root / SPLIT_REL, len(anno))
    raw = scipy.io.loadmat(root / SPLIT_REL)
    assert raw["test_ind"].dtype == np.int32 and raw["test_ind"][0, 0] == 1
    assert len(split.train) + len(split.test) == 60
    model = caption_model()
    for caption, ids in zip(anno.captions, anno.word_ids, strict=True):
        assert model.word_ids(caption).tolist() == ids.tolist()
    # the default phrasing is per outfit: identical codes, identical caption
    rows = [anno.codes[k] for k in ("gender", "color", "sleeve", "category")]
    assert _phrasings_per_outfit(rows, anno.captions) == 1
    with (
        extracted_member(root / ZIP_REL, "pw", tmp_path / "x") as h5,
        open_g2(h5, "G2.h5", 60, root / ANNOTATIONS_REL) as g2,
    ):
        images, seg = next(read_g2_rows(g2, np.arange(60), "G2.h5", chunk=60))
    assert images.shape == (60, 128, 128, 3) and images.dtype == np.uint8
    assert set(np.unique(seg)) <= set(range(7))
    # rows line up: each image wears the colour its annotation row names
    rows = [i for i in range(60) if anno.codes["color"][i] != MULTICOLOR]
    found = [garment_colour_code(images[i] / 255, seg[i]) for i in rows]
    agree = np.mean([f == anno.codes["color"][i] for f, i in zip(found, rows, strict=True)])
    assert agree > 0.9


def test_stage_rejects_bad_params_without_output(tmp_path: Path):
    proc = run_stage(tmp_path, n_images=3)
    assert proc.returncode == 1 and "demo.n_images" in proc.stderr
    assert not (tmp_path / "data/demo_benchmark").exists()
    proc = run_stage(tmp_path, encryption="rot13")
    assert proc.returncode == 1 and "demo.encryption" in proc.stderr
    proc = run_stage(tmp_path, phrasing="per-word")
    assert proc.returncode == 1 and "demo.phrasing" in proc.stderr
    assert not (tmp_path / "data/demo_benchmark").exists()
