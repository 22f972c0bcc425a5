"""Stand-in models (scripts/standin_models.py): published architectures, random weights.

Full size is checked on the meta device (no memory, no weights); the reduced stand-ins are
written to disk and loaded through the stages' own loaders.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from transformers import CLIPModel, CLIPTextModel

from conftest import ROOT
from fashion.clip.models import load_clip
from fashion.core.stage import PipelineError
from fashion.inpaint.models import load_inpainting
from fashion.sd.models import load_sd


def load_script(path: Path) -> ModuleType:
    """A script (not a package module) imported from its file, the import path unchanged."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


run_stages = load_script(ROOT / "bench" / "run_stages.py")
standin = load_script(ROOT / "scripts" / "standin_models.py")
use_profile = load_script(ROOT / "scripts" / "use_profile.py")


def test_full_size_configs_have_the_published_parameter_counts() -> None:
    ids = standin.TokenIds(bos=0, eos=1, pad=1)
    vocab = standin.VOCAB_SIZE
    with torch.device("meta"):
        models = {
            "clip": CLIPModel(standin.clip_config(ids, vocab)),
            "unet": UNet2DConditionModel(**standin.unet_config()),
            "vae": AutoencoderKL(**standin.vae_config()),
            "text_encoder": CLIPTextModel(standin.text_encoder_config(ids, vocab)),
        }
    counts = {name: standin.n_parameters(model) for name, model in models.items()}
    assert counts == standin.PUBLISHED_PARAMETERS
    vision = models["clip"].config.vision_config
    assert (vision.patch_size, vision.image_size, vision.hidden_size) == (32, 224, 768)
    assert models["unet"].config.sample_size == 64
    assert models["vae"].config.scaling_factor == 0.18215


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standin")
    assert standin.main([str(out), "--reduced", "--device", "cpu"]) == 0
    return out


def pooled_at_first_eos(hidden: torch.Tensor, ids: torch.Tensor, eos: int) -> torch.Tensor:
    """The hidden state at each row's first EOS token, where CLIP's text pooling must read."""
    first = (ids == eos).int().argmax(dim=-1)
    return hidden[torch.arange(len(ids)), first]


def test_reduced_clip_loads_like_a_hub_model_and_pools_at_eos(reduced: Path) -> None:
    model, processor = load_clip(reduced / standin.CLIP_DIR)
    tokenizer = processor.tokenizer
    text = model.config.text_config
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    assert text.vocab_size == len(tokenizer) and tokenizer.model_max_length == 77
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    captions = ["the lady wore a red long-sleeved dress.", "the man is wearing a blue tee."]
    batch = processor(text=captions, images=list(images), return_tensors="pt", padding=True)
    assert batch["pixel_values"].shape[-2:] == (224, 224)
    with torch.no_grad():
        assert model(**batch).logits_per_image.shape == (2, 2)
        text_out = model.text_model(batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(
        text_out.pooler_output,
        pooled_at_first_eos(text_out.last_hidden_state, batch["input_ids"], tokenizer.eos_token_id),
    )


def test_reduced_sd_loads_like_a_hub_pipeline_and_generates(reduced: Path) -> None:
    pipe = load_sd(reduced / standin.SD_DIR)
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    assert encoder.config.eos_token_id == tokenizer.eos_token_id
    assert encoder.config.vocab_size == len(tokenizer) and tokenizer.model_max_length == 77
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.safety_checker is None
    assert pipe.unet.config.cross_attention_dim == encoder.config.hidden_size
    ids = tokenizer(["the lady wore a red dress."], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = encoder(ids.input_ids)
    torch.testing.assert_close(
        out.pooler_output,
        pooled_at_first_eos(out.last_hidden_state, ids.input_ids, tokenizer.eos_token_id),
    )
    images = pipe(
        "the lady wore a red dress.",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()


def test_reduced_inpainting_stand_in_loads_and_redraws_a_masked_region(reduced: Path) -> None:
    pipe = load_inpainting(reduced / standin.INPAINT_DIR)
    assert pipe.unet.config.in_channels == 9 and pipe.safety_checker is None
    sd = load_sd(reduced / standin.SD_DIR)
    assert pipe.tokenizer.get_vocab() == sd.tokenizer.get_vocab()  # one tokenizer for both
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    images = pipe(
        "the lady wore a red dress.",
        image=Image.new("RGB", (64, 64), "white"),
        mask_image=Image.fromarray(mask),
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()


def test_inception_stand_in_loads_as_evaluate_loads_it(reduced: Path) -> None:
    path = reduced / standin.INCEPTION_FILE
    net = standin.load_standin_inception(path)
    saved = torch.load(path)
    for name, value in net.state_dict().items():  # the file's weights, not a fresh init
        torch.testing.assert_close(value, saved[name])
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert net(images).shape == (2, 2048)


def test_captions_file_that_is_missing_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "train.h5"
    with pytest.raises(PipelineError, match=str(missing)):
        standin.read_captions(missing)


def test_smoke_profile_points_at_the_stand_ins_written_here(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    profiles = [str(ROOT / "profiles" / name) for name in ("real.yaml", "smoke.yaml")]
    assert use_profile.main([*profiles, "--params", str(params)]) == 0
    p = yaml.safe_load(params.read_text())
    models = Path(p["evaluate"]["inception_weights"]).parent
    assert Path(p["evaluate"]["inception_weights"]).name == standin.INCEPTION_FILE
    assert p["base_clip"]["pretrained"] == str(models / standin.CLIP_DIR)
    assert p["base_sd"]["pretrained"] == str(models / standin.SD_DIR)
    assert p["base_inpaint"]["pretrained"] == str(models / standin.INPAINT_DIR)
    assert p["evaluate"]["skip_inception"] is False
    assert p["benchmark"]["root"] == "data/demo_benchmark"


# --- bench/run_stages.py: the stage runner of bench/gpu_smoke.sh ------------------------------


def test_stage_commands_follow_dvc_yaml_with_params_substituted(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert use_profile.main([str(ROOT / "profiles" / "real.yaml"), "--params", str(params)]) == 0
    commands = run_stages.stage_commands(ROOT / "dvc.yaml", params)
    assert list(commands) == list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    launch = yaml.safe_load(params.read_text())["accelerate"]["launch"]
    finetune_sd = f"{launch} stages/finetune_sd.py --subset data/subset"
    assert commands["finetune_sd"].startswith(finetune_sd)
    assert commands["finetune_sd"].endswith("--live-dir dvclive/finetune_sd")  # dvc.yaml's vars
    assert "${" not in "".join(commands.values())


def test_direct_runner_times_each_stage_and_stops_at_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text("greet: {word: hello}\n")
    stages = {
        "first": {"cmd": "python -c 'print(\"${greet.word}\")' > first.txt"},
        "second": {"cmd": "exit 3"},
        "third": {"cmd": "touch third.txt"},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert run_stages.main(["--runner", "direct"]) == 1
    assert (tmp_path / "first.txt").read_text() == "hello\n"
    assert not (tmp_path / "third.txt").exists()
    record = json.loads((tmp_path / "smoke_report.md").read_text().strip().splitlines()[-1])
    ran = [(stage["stage"], stage["returncode"]) for stage in record["stages"]]
    assert ran == [("first", 0), ("second", 3)]
    assert record["ok"] is False and all(s["seconds"] >= 0 for s in record["stages"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [record]


# --- bench/gpu_smoke.sh: what the offline box lacks comes from the wheels folder -----------

# What the offline GPU box has (bench/gpu_smoke.sh's contract), with what they depend on.
BOX_PACKAGES = ("torch", "transformers", "accelerate", "peft", "h5py", "torchmetrics", "numpy",
                "scipy", "pandas", "matplotlib", "pillow", "pyyaml")  # fmt: skip
# The box's interpreter, for the requirements' environment markers.
BOX_MARKERS = {"extra": "", "python_version": "3.12", "python_full_version": "3.12.0"}


def shell_array(script: str, name: str) -> list[str]:
    """The words of a bash array `NAME=(...)` in `script`."""
    import re

    found = re.search(rf"^{name}=\((.*?)\)", script, re.S | re.M)
    assert found, f"gpu_smoke.sh: no {name}=(...)"
    return [w for line in found.group(1).splitlines() for w in line.split("#")[0].split()]


def requirements(name: str) -> list[str]:
    """Names of what distribution `name` requires on the box (markers held, no extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        lines = metadata.requires(name) or []
    except metadata.PackageNotFoundError:  # required only where it is installed
        return []
    wanted = [Requirement(line) for line in lines]
    return [r.name for r in wanted if r.marker is None or r.marker.evaluate(BOX_MARKERS)]


def dependency_closure(names: list[str] | tuple[str, ...]) -> set[str]:
    """The distributions `names` install with their dependencies, as normalised names."""
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(canonicalize_name(r) for r in requirements(name))
    return seen


def import_names(distributions: set[str]) -> set[str]:
    """The top-level modules the installed `distributions` provide."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if any(canonicalize_name(d) in distributions for d in dists)
    }


def imported_top_level(paths: list[Path]) -> set[str]:
    """Top-level names of every import in `paths`, those inside functions too."""
    import ast

    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_the_smoke_run_imports_is_on_the_box_or_in_the_wheels() -> None:
    """What the stages import is on the box (BOX_PACKAGES and their dependencies) or in
    the wheels `--download-wheels` fetches (NO_DEPS alone; dvc and dvclive with their
    dependencies), and so are the requirements of NO_DEPS; and `install_missing` checks for
    each such package (MODULES). A stage importing anything else would stop the smoke run on
    the box, as `wordcloud` did."""
    from packaging.utils import canonicalize_name

    script = (ROOT / "bench" / "gpu_smoke.sh").read_text()
    no_deps = [canonicalize_name(n) for n in shell_array(script, "NO_DEPS")]
    box = dependency_closure(BOX_PACKAGES)
    # and torchvision, for torch-fidelity, when TORCH_VERSION names the box's torch
    wheels = {*no_deps, "torchvision"} | dependency_closure(["dvc", "dvclive"])
    checked = {entry.split(":")[0].split(".")[0] for entry in shell_array(script, "MODULES")}

    ran = [
        # the pipeline's code: the app (`make app`, Gradio) is not part of a smoke run
        *(p for p in (ROOT / "stages").rglob("*.py") if "app" not in p.relative_to(ROOT).parts),
        *(ROOT / "scripts" / name for name in ("standin_models.py", "use_profile.py")),
        ROOT / "bench" / "run_stages.py",
    ]
    local = {p.stem for p in (ROOT / "stages").glob("*.py")} | {"fashion"}
    third_party = imported_top_level(ran) - set(sys.stdlib_module_names) - local
    assert {"torch", "diffusers", "wordcloud"} <= third_party  # the scan sees the stages
    on_box = import_names(box)
    assert third_party - on_box - import_names(wheels) == set()
    assert third_party - on_box - checked == set()  # installed when missing

    # diffusers lists importlib-metadata, and imports it on Python < 3.8 only
    not_imported = {"importlib-metadata"}
    unmet = {
        package: sorted(
            r
            for r in map(canonicalize_name, requirements(package))
            if r not in box | wheels | not_imported
        )
        for package in no_deps
    }
    assert {package: r for package, r in unmet.items() if r} == {}
