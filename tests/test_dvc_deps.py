"""Every repo module a stage imports, directly or not, is among that stage's `deps`.

Otherwise editing it (a label map, a loss) would leave `dvc repro` reporting stale outputs
as up to date. The imports are read from the code (AST), as Python resolves them with
`stages/` on the path: `fashion.x` is stages/fashion/x.py, a package brings its
`__init__.py`, and a stage may import a sibling stage script.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

STAGES_DIR = ROOT / "stages"


def module_files(name: str) -> list[Path]:
    """The repo files Python executes to import `name` (packages' __init__.py included)."""
    parts, files = name.split("."), []
    for i in range(1, len(parts) + 1):
        base = STAGES_DIR.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def imported_files(path: Path) -> set[Path]:
    """Repo files `path` imports, transitively."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                todo += module_files(name)
    return seen


def stage_scripts() -> list[tuple[str, Path, list[str]]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = []
    for name, stage in stages.items():
        script = re.search(r"(stages/\w+\.py)", stage["cmd"])
        assert script, f"dvc.yaml: stage {name} runs no stage script: {stage['cmd']}"
        deps = [d for d in stage.get("deps", []) if isinstance(d, str)]
        out.append((name, ROOT / script.group(1), deps))
    return out


@pytest.mark.parametrize("name,script,deps", stage_scripts(), ids=lambda x: str(x))
def test_stage_deps_cover_its_imports(name: str, script: Path, deps: list[str]) -> None:
    covered = [ROOT / d for d in deps]
    missing = sorted(
        str(f.relative_to(ROOT))
        for f in imported_files(script)
        if not any(f == c or c in f.parents for c in covered)
    )
    assert not missing, f"dvc.yaml: stage {name} imports {missing}, not in its deps"


def test_the_check_sees_transitive_imports() -> None:
    files = {str(f.relative_to(ROOT)) for f in imported_files(STAGES_DIR / "generate.py")}
    # generate -> fashion.sd_models -> fashion.clip_models -> fashion.clip_data
    assert {"stages/fashion/sd_models.py", "stages/fashion/clip_data.py"} <= files
    assert "stages/fashion/__init__.py" in files
