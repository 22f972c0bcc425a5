"""The app's logic (`fashion.app`), without a browser, on the tiny pipeline's outputs: each
tab's results, and each bad input as one sentence for the page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fashion.app import generate, redress, search
from fashion.app.outputs import AppError, Outputs, read_outputs
from fashion.data.attributes import LABEL_MAPS
from fashion.data.pairs import redress_rows


@pytest.fixture(scope="module")
def outputs(pipeline: Path) -> Iterator[Outputs]:
    """The pipeline's outputs, read in its folder, as `python -m fashion.app --root` runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(pipeline)
        yield read_outputs(".")


@pytest.fixture(scope="module")
def tests(outputs: Outputs) -> search.TestSet:
    return search.TestSet(outputs)


def settings(outputs: Outputs, n: int = 3) -> generate.Settings:
    return generate.Settings.defaults(outputs, n)


def test_the_attribute_pickers_write_the_benchmark_s_sentence() -> None:
    assert generate.sentence("female", "red", "long-sleeved", "dress") == (
        "the lady is wearing a red long-sleeved dress."
    )
    assert generate.sentence("male", "orange", "unspecified", "tee") == (
        "the man is wearing an orange tee."
    )
    with pytest.raises(AppError, match="pick a color: 'teal' is not one of the benchmark's"):
        generate.sentence("male", "teal", "sleeveless", "tee")


def test_generate_gives_n_images_from_each_model_with_the_same_seeds(outputs: Outputs) -> None:
    images = generate.generate(outputs, "the lady is wearing a red dress.", settings(outputs))
    size = outputs.section("generate")["resolution"]
    assert set(images) == {"base", "finetuned"}
    assert all(v.shape == (3, size, size, 3) and v.dtype == np.uint8 for v in images.values())
    again = generate.generate(outputs, "the lady is wearing a red dress.", settings(outputs))
    assert all(np.array_equal(images[m], again[m]) for m in images)  # seeds fix the noise
    assert not np.array_equal(images["base"], images["finetuned"])
    assert not np.array_equal(images["base"][0], images["base"][1])  # seed, seed + 1


def test_an_empty_or_overlong_prompt_is_refused_with_the_encoder_s_limit(
    outputs: Outputs,
) -> None:
    with pytest.raises(AppError, match="type a prompt"):
        generate.generate(outputs, "   ", settings(outputs))
    limit = generate.pipelines(outputs)["finetuned"].tokenizer.model_max_length
    assert limit < 77  # the demo's tiny text encoder; SD v1.5's takes 77
    long = " ".join(["red"] * (limit + 5))
    with pytest.raises(AppError, match=rf"tokens; the loaded text encoder takes at most {limit}$"):
        generate.generate(outputs, long, settings(outputs))
    with pytest.raises(AppError, match="ask for 1 to 16 images, not 0"):
        generate.generate(outputs, "a red dress", settings(outputs, 0))


def test_a_missing_model_says_to_run_the_pipeline(
    pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    shutil.copytree(pipeline, project, symlinks=True, ignore=shutil.ignore_patterns("sd"))
    monkeypatch.chdir(project)
    outputs = read_outputs(".")
    with pytest.raises(AppError, match=r"^run `dvc repro` first: models/sd is missing$"):
        generate.generate(outputs, "a red dress", settings(outputs))
    with pytest.raises(AppError, match="start the app in the project's folder"):
        read_outputs(tmp_path / "elsewhere")


def test_a_gpu_out_of_memory_suggests_fewer_images(
    outputs: Outputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = generate.pipelines(outputs)["base"]

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(type(pipe), "__call__", out_of_memory)
    with pytest.raises(AppError, match="the GPU ran out of memory: ask for fewer images"):
        generate.generate(outputs, "a red dress", settings(outputs))


def test_search_ranks_test_images_and_caches_their_embeddings(
    outputs: Outputs, tests: search.TestSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = tests.captions[0]
    hits = search.search(tests, query, 5)
    for model in search.MODELS:
        assert [h.rank for h in hits[model]] == [1, 2, 3, 4, 5]
        scores = [h.score for h in hits[model]]
        assert scores == sorted(scores, reverse=True)
        assert all(h.caption == tests.captions[h.row] for h in hits[model])
    cached = sorted((outputs.root / search.CACHE).glob("*.pt"))
    assert [p.name.split("-")[0] for p in cached] == ["base", "finetuned"]

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("embedded the test images again")

    monkeypatch.setattr(search, "embed_images", not_again)
    fresh = search.TestSet(read_outputs("."))  # a restart reads the cache
    assert fresh.embeddings("finetuned")[0].shape[0] == len(fresh)
    with pytest.raises(AppError, match="type a sentence to search for"):
        search.search(tests, "", 5)
    with pytest.raises(AppError, match=f"ask for 1 to {len(tests)} results"):
        search.search(tests, query, len(tests) + 1)


def test_an_image_gets_its_nearest_captions_and_zero_shot_attributes(
    tests: search.TestSet, tmp_path: Path
) -> None:
    upload = tmp_path / "garment.png"
    from PIL import Image

    Image.fromarray(tests.images[0]).save(upload)
    found = search.describe(tests, search.read_upload(upload), 3)
    assert [h.rank for h in found.captions] == [1, 2, 3]
    assert all(h.caption in tests.distinct for h in found.captions)
    assert set(found.attributes) == set(LABEL_MAPS)
    for attribute, (value, probability) in found.attributes.items():
        assert value in LABEL_MAPS[attribute].values() and 0 < probability <= 1
    text = tmp_path / "notes.png"
    text.write_text("not pixels")
    with pytest.raises(AppError, match=r"^notes.png is not an image"):
        search.read_upload(text)
    with pytest.raises(AppError, match="upload an image"):
        search.read_upload(None)


def test_redress_keeps_every_pixel_outside_the_mask(
    outputs: Outputs, tests: search.TestSet
) -> None:
    source, target = redress_rows(tests.path)
    index = int(source[0])
    done = redress.redress(outputs, tests, index, "", rows=2)
    assert done.sentence == tests.captions[int(target[0])]  # the official pair's
    assert done.target_map is not None  # redress v2: the shape model's map
    outside = done.mask == 0
    assert outside.any() and (~outside).any()
    for model in redress.MODELS:
        assert done.rows[model].shape == (2, *done.source.shape)
        assert all(np.array_equal(r[outside], done.source[outside]) for r in done.rows[model])
    with pytest.raises(AppError, match=rf"pick a test image from 0 to {len(tests) - 1}"):
        redress.redress(outputs, tests, len(tests), "a red dress")
    with pytest.raises(AppError, match="pick a test image"):
        redress.redress(outputs, tests, -1, "a red dress")
