"""The import rule between the package's sub-packages (docs/architecture.md, "The package"):
imports go one way, without exceptions. A new import across sub-packages either fits the
rule or moves the shared code below both."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "stages" / "fashion"

# What each sub-package may import, as docs/architecture.md states it.
MAY_IMPORT = {
    "core": set(),
    "data": {"core"},
    "demo": {"core", "data"},
    "eda": {"core", "data"},
    "train": {"core", "data"},
    "clip": {"core", "data", "train"},
    "sd": {"core", "data", "train"},
    "shape": {"core", "data", "train"},
    "inpaint": {"core", "data", "train", "sd", "shape"},
    "metrics": {"core", "data", "train", "clip", "shape"},
    # the app serves the trained models: it may read every stage's code
    "app": {"core", "data", "train", "clip", "sd", "shape", "inpaint", "metrics"},
}


def imported_subpackages(module: Path) -> set[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return {n.split(".")[1] for n in names if n.startswith("fashion.")}


def test_every_subpackage_is_in_the_rule() -> None:
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert found == set(MAY_IMPORT)


def test_imports_between_subpackages_follow_the_rule() -> None:
    broken = []
    for sub, allowed in MAY_IMPORT.items():
        for module in sorted((PACKAGE / sub).rglob("*.py")):
            for other in sorted(imported_subpackages(module) - allowed - {sub}):
                broken.append(f"{module.relative_to(PACKAGE)} imports fashion.{other}")
    assert not broken, broken


def test_the_rule_has_no_cycle() -> None:
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in MAY_IMPORT[start]
        )

    assert not [sub for sub in MAY_IMPORT if reaches(sub, sub)]


def test_an_import_against_the_rule_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from fashion.metrics.retrieval import recall_summary\nimport fashion.sd\n")
    assert imported_subpackages(module) - MAY_IMPORT["clip"] == {"metrics", "sd"}
