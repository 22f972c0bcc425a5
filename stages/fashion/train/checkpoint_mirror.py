"""A copy of the latest training checkpoint on storage that outlives the machine.

In Colab the work tree sits on the VM's local disk (fast, large, lost on a disconnect) and
only Drive survives. A training stage whose `checkpoint_mirror` param names a folder on
Drive copies each new checkpoint there, replacing the previous copy, and a run on a fresh
VM starts by copying it back. A disconnect then loses at most `checkpoint_every` steps,
and Drive holds one checkpoint per stage, not the cache and the data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def mirror_checkpoint(root: Path, checkpoint: Path, mirror: Path) -> None:
    """Make `mirror` hold `root`'s top-level files and the `checkpoint` folder, nothing else.

    The copy is written beside `mirror` and swapped in by renames, so an interrupted copy
    never replaces the previous good one.
    """
    mirror = Path(mirror)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    fresh, stale = mirror.with_name(mirror.name + ".tmp"), mirror.with_name(mirror.name + ".old")
    for leftover in (fresh, stale):
        shutil.rmtree(leftover, ignore_errors=True)
    fresh.mkdir()
    for item in Path(root).iterdir():
        if item.is_file():  # what the checkpoints were trained with (config, settings)
            shutil.copy2(item, fresh / item.name)
    shutil.copytree(checkpoint, fresh / checkpoint.name)
    if mirror.exists():
        mirror.rename(stale)
    fresh.rename(mirror)
    shutil.rmtree(stale, ignore_errors=True)


def restore_checkpoint(
    root: Path, mirror: str | Path | None, is_checkpoint: Callable[[Path], bool]
) -> bool:
    """Copy the mirrored checkpoint into `root` when `root` holds none; whether it did.

    The stage's own resume logic then decides, as for any local checkpoint, whether it was
    trained with the same settings and data.
    """
    if not mirror or not Path(mirror).is_dir():
        return False
    root = Path(root)
    if root.is_dir() and any(is_checkpoint(p) for p in root.iterdir()):
        return False
    shutil.copytree(mirror, root, dirs_exist_ok=True)
    print(f"{root}: restored the checkpoint mirrored in {mirror}")
    return True
