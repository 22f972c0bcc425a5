"""Every repo module a stage imports, directly or not, is among that stage's `deps`.

Otherwise editing it (a label map, a loss) would leave `dvc repro` reporting stale outputs
as up to date. `scripts/dvc_deps.py` reads the imports from the code (AST) and writes or
checks the deps lists; these tests run its check on the repo and on edited copies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPT = ROOT / "scripts/dvc_deps.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, "--check", "--root", root], capture_output=True, text=True
    )


def copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    return root


def test_every_stage_lists_what_it_imports() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_an_import_without_its_dep_fails_and_is_fixed(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    generate = root / "stages/generate.py"
    # generate does not import the EDA figures; a new import of them must show up
    generate.write_text("import fashion.eda.figures  # noqa: F401\n" + generate.read_text())
    result = check(root)
    assert result.returncode == 1
    assert "stage generate imports stages/fashion/eda/figures.py, not in its deps" in result.stderr
    assert "stage generate imports stages/fashion/eda/__init__.py" in result.stderr
    assert "stage eda" not in result.stderr  # only the edited stage is affected

    subprocess.run([sys.executable, SCRIPT, "--root", root], check=True, capture_output=True)
    assert check(root).returncode == 0
    assert "      - stages/fashion/eda/figures.py\n" in (root / "dvc.yaml").read_text()


def test_a_transitive_import_counts(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    prompts = root / "stages/fashion/sd/prompts.py"
    # a module the stage imports imports a new module: the stage depends on it too
    (root / "stages/fashion/sd/vocabulary.py").write_text("WORDS = ()\n")
    prompts.write_text("import fashion.sd.vocabulary  # noqa: F401\n" + prompts.read_text())
    result = check(root)
    assert result.returncode == 1
    assert "stage generate imports stages/fashion/sd/vocabulary.py" in result.stderr


def test_a_dep_no_longer_imported_is_reported(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    dvc_yaml = root / "dvc.yaml"
    text = dvc_yaml.read_text()
    dvc_yaml.write_text(
        text.replace("      - stages/labels.py\n", "      - stages/labels.py\n"
                     "      - stages/fashion/eda/figures.py\n", 1)
    )  # fmt: skip
    result = check(root)
    assert result.returncode == 1
    assert "stage labels lists stages/fashion/eda/figures.py, which it does not import" in (
        result.stderr
    )
