"""Save the uncached outputs (`cache: false` in dvc.yaml) to a folder, and restore them.

Metrics files and a few small plot folders are not in the DVC cache: git keeps them, and
`dvc push` does not send them. A machine that runs stages without committing (a Colab VM)
loses them with the VM, and on the next VM DVC sees them missing and runs their stages
again, training ones included. The notebook saves them to Drive after each stage and
restores them before `dvc pull`:

    python scripts/uncached_outputs.py save DIR      # copy each one present into DIR
    python scripts/uncached_outputs.py restore DIR   # copy back those DIR holds

Paths keep their place relative to the project root; a file is replaced whole (written
beside, then renamed), so an interrupted copy leaves the earlier one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from dvc.repo import Repo


def uncached_outputs(root: Path) -> list[Path]:
    """The `cache: false` outputs of every stage, relative to `root`."""
    with Repo(str(root)) as repo:
        return sorted(
            Path(out.fs_path).relative_to(root.resolve())
            for stage in repo.index.stages
            for out in stage.outs
            if not out.use_cache
        )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def copy_tree(relatives: list[Path], source: Path, target: Path) -> int:
    """Copy the files at or under `relatives` from `source` to `target`; how many."""
    copied = 0
    for relative in relatives:
        if not (source / relative).exists():
            continue
        for file in files_under(source / relative):
            destination = target / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".tmp")
            shutil.copyfile(file, partial)
            os.replace(partial, destination)
            copied += 1
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--root", type=Path, default=Path("."), help="the project folder")
    args = parser.parse_args(argv)
    root, folder = args.root.resolve(), args.folder.resolve()
    outputs = uncached_outputs(root)
    if args.action == "save":
        n = copy_tree(outputs, root, folder)
    else:
        n = copy_tree(outputs, folder, root)
    print(f"{args.action}: {n} files of {len(outputs)} uncached outputs ({folder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
