"""Keep each stage's code `deps` in dvc.yaml equal to the repo modules its script imports.

    python scripts/dvc_deps.py            # rewrite the code deps of every stage
    python scripts/dvc_deps.py --check    # exit 1, naming stage and module, if any differ

The imports are read from the code (AST), transitively, as Python resolves them when a stage
runs as `python stages/X.py`: `fashion.a.b` is stages/fashion/a/b.py, each package brings its
`__init__.py`, and a bare `import X` of a sibling stage script is stages/X.py.

The grain is one file per dep, not a folder: a one-line edit in `fashion/core` then re-runs
only the stages that import the edited file, instead of every stage (hours of GPU training
on a real run). Deps that are not Python files under stages/ (data, assets, prompt files)
are kept as written.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_HEADER = re.compile(r"^  (\w+):\s*$")
KEY = re.compile(r"^    (\w+):")
ITEM = re.compile(r"^      - (.+?)\s*$")


def module_files(stages_dir: Path, name: str) -> list[Path]:
    """The repo files Python executes to import `name` (packages' __init__.py included)."""
    parts, files = name.split("."), []
    for i in range(1, len(parts) + 1):
        base = stages_dir.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def imported_files(script: Path) -> set[Path]:
    """`script` and every repo file it imports, transitively."""
    stages_dir = script.parent
    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text(), filename=str(current))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                todo += module_files(stages_dir, name)
    return seen


def is_code(dep: str) -> bool:
    return dep.startswith("stages/") and dep.endswith(".py")


def stage_blocks(lines: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per stage, per key (cmd, deps, ...): the line range [start, end) of that key's block."""
    blocks: dict[str, dict[str, tuple[int, int]]] = {}
    stage = key = None
    for i, line in enumerate(lines):
        if m := STAGE_HEADER.match(line):
            stage, key = m.group(1), None
            blocks[stage] = {}
        elif stage and (m := KEY.match(line)):
            key = m.group(1)
            blocks[stage][key] = (i, i + 1)
        elif stage and key and (line.startswith("      ") or not line.strip()):
            start, _ = blocks[stage][key]
            if line.strip():
                blocks[stage][key] = (start, i + 1)
    return blocks


def expected_deps(root: Path, lines: list[str], block: dict[str, tuple[int, int]]) -> list[str]:
    start, end = block["cmd"]
    script = re.search(r"stages/\w+\.py", "".join(lines[start:end]))
    if not script:
        raise SystemExit(f"dvc.yaml: line {start + 1}: the cmd runs no stages/*.py script")
    code = sorted(str(f.relative_to(root)) for f in imported_files(root / script.group(0)))
    main = script.group(0)
    return [main, *(c for c in code if c != main)]


def sync(root: Path, check: bool) -> list[str]:
    """Rewrite (or only compare) the code deps; returns one message per difference."""
    dvc_yaml = root / "dvc.yaml"
    lines = dvc_yaml.read_text().splitlines(keepends=True)
    problems: list[str] = []
    # bottom-up, so earlier line numbers stay valid while blocks are replaced
    for stage, block in reversed(list(stage_blocks(lines).items())):
        if "cmd" not in block:
            continue
        code = expected_deps(root, lines, block)
        start, end = block.get("deps", (block["cmd"][1], block["cmd"][1]))
        items = [m.group(1) for line in lines[start:end] if (m := ITEM.match(line))]
        current = [d for d in items if is_code(d)]
        for missing in sorted(set(code) - set(current)):
            problems.append(f"dvc.yaml: stage {stage} imports {missing}, not in its deps")
        for extra in sorted(set(current) - set(code)):
            problems.append(f"dvc.yaml: stage {stage} lists {extra}, which it does not import")
        others = [d for d in items if not is_code(d)]
        block_lines = ["    deps:\n", *(f"      - {d}\n" for d in [*code, *others])]
        lines[start:end] = block_lines
    if not check and problems:
        dvc_yaml.write_text("".join(lines))
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a diff")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (default: this repo)")
    args = parser.parse_args()
    problems = sync(args.root, args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and problems:
        sys.exit(1)
    if not args.check:
        print(f"dvc.yaml: {'updated' if problems else 'already up to date'}")


if __name__ == "__main__":
    main()
