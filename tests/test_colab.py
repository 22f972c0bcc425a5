"""The Colab launcher is a valid notebook whose shell lines only call the repo's own commands."""

from __future__ import annotations

import json
import re

import yaml

from conftest import ROOT, deep_update

NOTEBOOK = ROOT / "colab.ipynb"
# Shell commands a launcher cell may run: the repo's pipeline tools, nothing with logic of its own.
ALLOWED_SHELL = re.compile(
    r"^!(git (clone|-C \"\$REPO_DIR\" pull)|pip install -q -r requirements\.txt -c constraints\.txt"
    r"|python scripts/use_profile\.py |dvc (repro|push|pull|params diff|metrics show|remote add))"
)


def code_cells() -> list[list[str]]:
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    return [
        "".join(cell["source"]).splitlines()
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]


def test_notebook_is_valid_json_with_code_cells() -> None:
    cells = code_cells()
    assert len(cells) >= 5
    for lines in cells:
        # IPython's `!shell` and `%magic` lines become `pass` so the rest must be valid Python.
        python = [re.sub(r"^(\s*)[!%].*", r"\1pass", line) for line in lines]
        compile("\n".join(python), "cell", "exec")


def test_shell_lines_only_call_repo_commands() -> None:
    shell = [line.strip() for lines in code_cells() for line in lines if line.strip()[:1] == "!"]
    assert any(line.startswith("!dvc repro") for line in shell)
    for line in shell:
        assert ALLOWED_SHELL.match(line), f"unexpected shell command in colab.ipynb: {line}"


def test_password_is_never_printed() -> None:
    source = "\n".join("\n".join(lines) for lines in code_cells())
    assert "getpass" in source
    assert not re.search(r"print\([^)]*password", source, re.IGNORECASE)


def settings() -> dict[str, str]:
    """The notebook's settings cell, run as Python."""
    namespace: dict[str, str] = {}
    exec("\n".join(code_cells()[0]), namespace)
    return namespace


# What a disconnect must not lose, the only settings on Drive: the benchmark, the DVC
# remote and its dvc.lock, the checkpoint mirrors (and finished batches) under one folder.
ON_DRIVE = {"BENCHMARK_ROOT", "DRIVE_DIR", "DVC_REMOTE", "CHECKPOINT_MIRROR", "LOCK_COPY"}


def test_only_what_must_survive_a_disconnect_is_on_drive() -> None:
    names = settings()
    paths = {k: v for k, v in names.items() if isinstance(v, str) and v.startswith("/content/")}
    assert {k for k, v in paths.items() if v.startswith("/content/drive/")} == ON_DRIVE
    # the work tree (DVC cache, decrypted G2.h5, data/subset) and the ~9 GB of model caches
    # on the VM's disk: a free Drive (15 GB) has no room for them beside the benchmark
    for key in ("REPO_DIR", "MODEL_CACHE"):
        assert not paths[key].startswith("/content/drive"), key
    source = "\n".join("\n".join(lines) for lines in code_cells())
    assert 'os.environ["HF_HOME"] = f"{MODEL_CACHE}' in source
    assert 'os.environ["TORCH_HOME"] = f"{MODEL_CACHE}' in source
    cell = next(c for c in code_cells() if any("use_profile.py" in line for line in c))
    profile = "\n".join(cell)
    assert 'PROFILES = "profiles/real.yaml profiles/colab.yaml"' in profile
    # every training stage (a params section with checkpoint_mirror) mirrors its checkpoints
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    training = [k for k, v in params.items() if isinstance(v, dict) and "checkpoint_mirror" in v]
    assert {"finetune_clip", "finetune_sd", "finetune_inpaint"} <= set(training)
    launch = next(line for line in cell if "use_profile.py" in line)
    assert launch.endswith("$overrides")  # shell-quoted, the benchmark root has spaces
    overrides = next(line for line in cell if line.startswith("overrides = "))
    assert "clip_saves" in overrides and "*drive_copies" in overrides
    copies = next(line for line in cell if line.startswith("drive_copies = "))
    for stage in training:
        found = re.search(
            rf'^(\w+) = f"{stage}\.checkpoint_mirror={{CHECKPOINT_MIRROR}}/{stage}"$',
            profile,
            re.M,
        )
        assert found, stage
        assert re.search(rf"\b{found[1]}\b", copies), stage
    # and every sampling stage (a section with batches_dir) keeps its finished batches there
    sampling = [k for k, v in params.items() if isinstance(v, dict) and "batches_dir" in v]
    assert {"generate", "redress"} <= set(sampling)
    for stage in sampling:
        found = re.search(
            rf'^(\w+) = f"{stage}\.batches_dir={{CHECKPOINT_MIRROR}}/{stage}"$', profile, re.M
        )
        assert found, stage
        assert re.search(rf"\b{found[1]}\b", copies), stage


def test_every_stage_is_pushed_as_soon_as_it_ends() -> None:
    cell = next(lines for lines in code_cells() if any("dvc repro" in line for line in lines))
    loop = [line.strip() for line in cell]
    repro = loop.index('!dvc repro "$stage"')
    # a failed stage stops the loop (IPython and Colab set _exit_code after a ! line)
    assert loop[repro + 1].startswith("if _exit_code:") and loop[repro + 2].startswith("raise ")
    assert loop[repro + 3] == "!dvc push" and "LOCK_COPY" in loop[repro + 4]


def test_clip_mirrors_only_its_last_step_to_fit_a_free_drive() -> None:
    """Each CLIP save writes ~2.4 GB to Drive (checkpoint and best/), all of which is
    assumed to stay until the run ends: one save, at the last step of the profile's run."""
    cell = next(c for c in code_cells() if any("use_profile.py" in line for line in c))
    override = 'clip_saves = f"finetune_clip.checkpoint_every={CLIP_CHECKPOINT_EVERY}"'
    assert any(line.startswith(override) for line in cell)
    profile: dict = {}
    for name in ("real", "colab"):  # in the notebook's order
        profile = deep_update(profile, yaml.safe_load((ROOT / f"profiles/{name}.yaml").read_text()))
    assert settings()["CLIP_CHECKPOINT_EVERY"] == profile["finetune_clip"]["steps"]
