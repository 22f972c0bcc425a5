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
    r"|python scripts/use_profile\.py |python bench/real_estimate\.py \$PROFILES --markdown$"
    r"|python scripts/uncached_outputs\.py (save|restore) \"\$UNCACHED_COPY\"$"
    r"|dvc (repro|push|pull|params diff|metrics show|remote add))"
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
ON_DRIVE = {
    "BENCHMARK_ROOT",
    "DRIVE_DIR",
    "DVC_REMOTE",
    "CHECKPOINT_MIRROR",
    "LOCK_COPY",
    "UNCACHED_COPY",
}


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
    launch = next(line for line in cell if "use_profile.py" in line)
    assert launch.endswith("$overrides")  # shell-quoted, the benchmark root has spaces
    overrides = next(line for line in cell if line.startswith("overrides = "))
    assert "*drive_copies" in overrides
    copies = next(line for line in cell if line.startswith("drive_copies = "))
    # what the profile keeps on Drive (checkpoint mirrors, finished batches), under the
    # notebook's default folder, and re-pointed by the notebook to its CHECKPOINT_MIRROR
    params = colab_params()
    kept = {
        f"{stage}.{key}": value
        for stage, spec in params.items()
        if isinstance(spec, dict)
        for key, value in spec.items()
        if key in ("checkpoint_mirror", "batches_dir") and value
    }
    assert {"finetune_sd.checkpoint_mirror", "generate.batches_dir", "redress.batches_dir"} <= set(
        kept
    )
    for dotted, value in kept.items():
        stage = dotted.split(".")[0]
        assert value == f"{settings()['CHECKPOINT_MIRROR']}/{stage}", dotted
        found = re.search(rf'^(\w+) = f"{dotted}={{CHECKPOINT_MIRROR}}/{stage}"$', profile, re.M)
        assert found, dotted
        assert re.search(rf"\b{found[1]}\b", copies), dotted
    # a stage the profile does not mirror is not mirrored by the notebook either (CLIP ends
    # within the 15 minutes a disconnect may cost: tests/test_real_estimate.py)
    assert params["finetune_clip"]["checkpoint_mirror"] is None
    assert "finetune_clip.checkpoint_mirror" not in profile


def colab_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in ("real", "colab"):  # in the notebook's order
        params = deep_update(params, yaml.safe_load((ROOT / f"profiles/{name}.yaml").read_text()))
    return params


def test_every_stage_is_pushed_as_soon_as_it_ends() -> None:
    cell = next(lines for lines in code_cells() if any("dvc repro" in line for line in lines))
    loop = [line.strip() for line in cell]
    repro = loop.index('!dvc repro "$stage"')
    # a failed stage stops the loop (IPython and Colab set _exit_code after a ! line)
    assert loop[repro + 1].startswith("if _exit_code:") and loop[repro + 2].startswith("raise ")
    assert loop[repro + 3] == "!dvc push"
    assert loop[repro + 4] == '!python scripts/uncached_outputs.py save "$UNCACHED_COPY"'
    assert "LOCK_COPY" in loop[repro + 5]


def test_a_new_vm_restores_the_uncached_outputs_before_pulling() -> None:
    cell = next(c for c in code_cells() if any(line.strip()[:9] == "!dvc pull" for line in c))
    lines = [line.strip() for line in cell]
    restore = lines.index('!python scripts/uncached_outputs.py restore "$UNCACHED_COPY"')
    assert lines[restore + 1] == "!dvc pull --allow-missing"  # data/subset is not pushed
