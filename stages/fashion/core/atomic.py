"""All-or-nothing outputs: write to a temporary sibling, rename into place on success.

A stage that fails half-way therefore leaves the previous output (or nothing),
never a half-written file or folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `target`; move it onto `target` if the block succeeds.

    With `is_dir=True` the temporary path is an (empty) directory the block fills.
    On any exception the temporary path is deleted and `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    if is_dir:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; outputs are not secret
    else:
        tmp.rmdir()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{target}: the stage wrote nothing to its temporary output")
        _remove(target)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
