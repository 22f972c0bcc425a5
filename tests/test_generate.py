"""generate: the fine-tuned weights are the ones used; prompts, prompt files and manifest;
clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

import base_sd
import finetune_sd
import generate
from fashion.core.stage import PipelineError
from fashion.data.attributes import COLOR
from fashion.data.subset import read_table, sample_rows
from fashion.sd.models import load_finetuned_sd
from fashion.sd.prompts import build_prompts, file_prompts
from sd_testdata import make_sd_project

ROOT = Path(__file__).resolve().parents[1]
# The tiny project's prompt file: its prompts on lines 3 and 6, comments and blank lines around.
PROMPT_FILE = (
    "# prompts of the tests\n\na yellow tank\n   \n# a comment\nthe man wore a black coat.\n"
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_sd_project(
        tmp_path_factory.mktemp("gen") / "p",
        ROOT,
        overrides={
            "sd_training": {"validation_prompts": []},
            "finetune_sd": {"steps": 3, "lr": 1e-2},
            "generate": {"prompts_file": "prompts/tiny.txt", "negative_prompt": "blurry"},
        },
    )
    (project / "prompts").mkdir()
    (project / "prompts/tiny.txt").write_text(PROMPT_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        base_sd.main()
        AcceleratorState._reset_state(True)
        finetune_sd.main()
        generate.main()
    return project


def test_generation_uses_the_finetuned_unet(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(generated)
    saved = load_file("models/sd/unet/diffusion_pytorch_model.safetensors")
    loaded = load_finetuned_sd("models/sd", "models/base_sd").unet.state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    manifest = pd.read_csv("data/generated/manifest.csv")
    base, tuned = (
        manifest[manifest.model == m].reset_index(drop=True) for m in ("base", "finetuned")
    )
    assert base[["prompt", "seed"]].equals(tuned[["prompt", "seed"]])
    for a, b in zip(base.file, tuned.file, strict=True):  # same prompt and seed, other weights
        assert not np.array_equal(
            np.asarray(Image.open(f"data/generated/{a}")),
            np.asarray(Image.open(f"data/generated/{b}")),
        )


def test_manifest_and_grids(generated: Path) -> None:
    manifest = pd.read_csv(generated / "data/generated/manifest.csv")
    # 2 grid + 1 free-form + 2 prompt file + 2 matched, per model
    assert manifest.groupby("model").size().to_dict() == {"base": 7, "finetuned": 7}
    red = manifest[(manifest.source == "in_domain") & (manifest.color == 1)]
    assert len(red) == 2 and red.prompt.str.contains(" red ").all() and COLOR[1] == "red"
    assert manifest[manifest.source == "free_form"].color.isna().all()
    assert manifest.seed.iloc[:7].tolist() == list(range(7))  # every image its own seed
    assert manifest.source.iloc[:7].tolist() == (
        ["in_domain"] * 2 + ["free_form"] + ["prompt_file"] * 2 + ["matched"] * 2
    )
    for model in ("base", "finetuned"):
        assert Image.open(generated / f"plots/generate/{model}_grid.png").size == (64, 64)


def test_matched_set_is_the_reference_sample_captions(generated: Path) -> None:
    """One image per sampled test image, from its caption, with its codes and row."""
    manifest = pd.read_csv(generated / "data/generated/manifest.csv")
    matched = manifest[(manifest.source == "matched") & (manifest.model == "base")]
    rows = sample_rows(8, 2, seed=0)  # reference.n_images 2 of the 8 test images, seed 0
    assert matched.row.tolist() == rows.tolist()
    table = read_table(generated / "data/subset/test.h5").iloc[rows]
    assert matched.prompt.tolist() == table.caption.tolist()
    for attribute in ("gender", "color", "sleeve", "category"):
        assert matched[attribute].tolist() == table[attribute].tolist()
    assert manifest[manifest.source != "matched"].row.isna().all()


def test_prompt_errors_name_the_param() -> None:
    with pytest.raises(PipelineError, match="n_test_captions is gone"):
        build_prompts({"colors": ["red"], "n_test_captions": 4})
    with pytest.raises(PipelineError, match="unknown names"):
        build_prompts(
            {
                "genders": ["female"],
                "colors": ["rde"],
                "sleeves": ["sleeveless"],
                "categories": ["tee"],
            }
        )


def test_matched_set_larger_than_the_split_takes_it_all(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["reference"]["n_images"] = 9
    params["generate"].update(prompts={"free_form": []}, prompts_file=None)  # matched set alone
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    with pytest.warns(UserWarning, match=r"reference.n_images=9, but the test split holds 8"):
        generate.main()
    manifest = pd.read_csv("data/generated/manifest.csv")
    assert manifest[manifest.model == "base"].row.tolist() == list(range(8))
    params["reference"]["n_images"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match=r"reference.n_images: must be an integer ≥ 1 or 'all'"):
        generate.main()
    assert len(pd.read_csv("data/generated/manifest.csv")) == 16  # left as it was


def test_half_precision_weights_generate(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`precision` loads the weights in that dtype (bf16 here, as on a CPU with bf16
    instructions), the fused fine-tuned weights included, and images still come out."""
    import shutil

    import fashion.sd.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["precision"] = "bf16"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    dtypes = []
    for name in ("load_base_sd", "load_finetuned_sd"):
        load = getattr(generate, name)
        monkeypatch.setattr(
            generate,
            name,
            lambda *a, _load=load, **k: dtypes.append((pipe := _load(*a, **k)).unet.dtype) or pipe,
        )
    generate.main()
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    manifest = pd.read_csv("data/generated/manifest.csv")
    assert len(manifest) == 14
    assert generate.device_and_dtype("auto")[1] == (
        torch.float16 if torch.cuda.is_available() else torch.bfloat16
    )
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)  # emulated bf16: ~15x slower
    if not torch.cuda.is_available():
        assert generate.device_and_dtype("bf16")[1] == torch.float32
    with pytest.raises(PipelineError, match="generate.precision"):
        generate.device_and_dtype("fp8")


def copy_with(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **spec: object
) -> Path:
    """A copy of the generated project with `spec` set in its generate params, as the cwd."""
    import shutil

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"].update(spec)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    return project


def test_prompt_file_lines_and_negative_prompt_in_the_manifest(generated: Path) -> None:
    manifest = pd.read_csv(generated / "data/generated/manifest.csv")
    for _, images in manifest.groupby("model"):
        in_file = images[images.source == "prompt_file"]
        assert in_file.prompt.tolist() == ["a yellow tank", "the man wore a black coat."]
        assert in_file.prompt_line.tolist() == [3, 6]  # comments and blank lines skipped
        assert in_file.color.isna().all()
    assert manifest[manifest.source != "prompt_file"].prompt_line.isna().all()
    assert (manifest.negative_prompt == "blurry").all()


def test_prompt_file_lines_are_counted_as_editors_do(tmp_path: Path) -> None:
    """Windows line ends and a byte-order mark change neither the text nor the numbering."""
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfa red tee\r\n\r\n  # note\r\n  a blue coat  \r\n")
    assert [(p.line, p.text, p.source) for p in file_prompts(path)] == [
        (1, "a red tee", "prompt_file"),
        (4, "a blue coat", "prompt_file"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"^missing\.txt: prompt file not found \(params\.yaml: generate\.prompts_file\)$"),
        (b"", r"^bad\.txt: no prompts \(only blank lines and # comments\)$"),
        (b"# only comments\n\n   \n#\n", r"^bad\.txt: no prompts"),
        (b"a red tee\n# caf\xc3\xa9\nblue \xe9 tee\nok\n", r"^bad\.txt, line 3: not UTF-8 text$"),
    ],
    ids=["missing", "empty", "comments-only", "not-utf8"],
)
def test_bad_prompt_file_is_a_one_line_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        Path("bad.txt").write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        file_prompts(Path("missing.txt" if content is None else "bad.txt"))


def test_bad_prompt_file_stops_generate_before_any_output(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_with(generated, tmp_path, monkeypatch, prompts_file="prompts/gone.txt")
    before = (project / "data/generated/manifest.csv").read_text()
    with pytest.raises(PipelineError, match=r"prompts/gone\.txt: prompt file not found"):
        generate.main()
    assert (project / "data/generated/manifest.csv").read_text() == before


def test_negative_prompt_reaches_every_batch_and_long_prompts_warn(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One negative prompt per prompt of each batch (4 + 3 images here); a prompt file line
    longer than the tiny text encoder's 16 tokens is named in a warning."""
    project = copy_with(generated, tmp_path, monkeypatch, batch_size=4, negative_prompt="dark")
    long = "the lady is wearing a red long-sleeved tee with a blue collar and white buttons."
    (project / "prompts/tiny.txt").write_text(PROMPT_FILE.replace("a yellow tank", long))
    calls = []
    call = StableDiffusionPipeline.__call__
    monkeypatch.setattr(
        StableDiffusionPipeline,
        "__call__",
        lambda self, prompt, **kw: (
            calls.append((prompt, kw["negative_prompt"])) or call(self, prompt, **kw)
        ),
    )
    with pytest.warns(UserWarning, match="tokens") as caught:
        generate.main()
    (message,) = [str(m.message) for m in caught if "tokens" in str(m.message)]  # line 3 only
    found = re.fullmatch(
        r"prompts/tiny\.txt, line 3: the prompt has (\d+) tokens, the text encoder takes 16: "
        "truncated",
        message,
    )
    assert found and int(found[1]) > 16
    assert [len(p) for p, _ in calls] == [4, 3] * 2  # base, then fine-tuned
    assert all(negative == ["dark"] * len(p) for p, negative in calls)
    assert (pd.read_csv("data/generated/manifest.csv").negative_prompt == "dark").all()


def images_of(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.asarray(Image.open(p)) for p in folder.rglob("*.png")}


def test_a_stopped_run_samples_only_the_batches_it_had_not_finished(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A run that stops midway (here the 6th batch raises, as a lost VM would) keeps its
    finished batches; the next run samples only the rest, and its images equal an
    uninterrupted run's. The outputs stay as they were until a run completes."""
    import shutil

    project = tmp_path / "p"
    shutil.copytree(generated, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["batch_size"] = 2  # 7 images per model: 4 batches each
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    generate.main()
    straight = images_of(Path("data/generated"))
    assert len(straight) == 14
    manifest = Path("data/generated/manifest.csv").read_text()
    assert not Path("data/generated.partial").exists()  # removed once the stage ends

    calls = []
    sample = StableDiffusionPipeline.__call__

    def stopping(self, *args, **kwargs):
        calls.append(1)
        if stop and len(calls) == 6:
            raise RuntimeError("the VM is gone")
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", stopping)
    stop = True
    with pytest.raises(RuntimeError, match="the VM is gone"):
        generate.main()
    assert len(list(Path("data/generated.partial").rglob("*.npy"))) == 5
    assert Path("data/generated/manifest.csv").read_text() == manifest  # untouched
    stop, calls[:] = False, []
    capsys.readouterr()
    generate.main()
    assert len(calls) == 3  # the fine-tuned model's last three batches
    assert "5 batches read back" in capsys.readouterr().out
    resumed = images_of(Path("data/generated"))
    assert resumed.keys() == straight.keys()
    for name, image in straight.items():
        np.testing.assert_array_equal(resumed[name], image, err_msg=name)
    assert not Path("data/generated.partial").exists()


def test_finished_batches_of_another_fingerprint_are_dropped(tmp_path: Path) -> None:
    from fashion.sd.sampling import FinishedBatches

    batch = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    FinishedBatches(tmp_path / "partial", {"steps": 20}).batch("base", 0, lambda: batch)
    again = FinishedBatches(tmp_path / "partial", {"steps": 20})
    np.testing.assert_array_equal(again.batch("base", 0, lambda: batch * 0), batch)
    assert again.reused == 1
    other = FinishedBatches(tmp_path / "partial", {"steps": 30})
    np.testing.assert_array_equal(other.batch("base", 0, lambda: batch * 0), batch * 0)
    assert other.reused == 0


def test_the_batches_left_to_sample_leave_out_those_a_stopped_run_kept(tmp_path: Path) -> None:
    """`todo` (one process: all of them) skips the kept batches and counts them as read
    back; `read` gives every batch in order once all are there."""
    from fashion.sd.sampling import FinishedBatches

    batches = {s: np.full((min(2, 7 - s), 2, 2, 3), s, np.uint8) for s in range(0, 7, 2)}
    FinishedBatches(tmp_path / "partial", {"steps": 20}).batch("base", 2, lambda: batches[2])
    again = FinishedBatches(tmp_path / "partial", {"steps": 20})
    todo = again.todo("base", 7, 2)
    assert todo == [0, 4, 6] and again.reused == 1
    for start in todo:
        again.batch("base", start, lambda start=start: batches[start])
    np.testing.assert_array_equal(again.read("base", 7, 2), np.concatenate(list(batches.values())))
