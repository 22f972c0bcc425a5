"""All-or-nothing outputs: a failing block leaves the previous output and no temp files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fashion.core.atomic import atomic_path


def test_directory_appears_whole_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert os.stat(target).st_mode & 0o055  # not owner-only like a bare mkdtemp
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_keeps_previous_output_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_replaces_existing_directory(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "stale").mkdir(parents=True)
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "new").write_text("n")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
