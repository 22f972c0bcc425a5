"""The checkpoint mirror holds the latest checkpoint only, and a failed copy keeps the last."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fashion.train.checkpoint_mirror import mirror_checkpoint, restore_checkpoint
from fashion.train.checkpoints import FINGERPRINT_FILE
from fashion.train.checkpoints import is_checkpoint as is_step


def checkpoint(root: Path, name: str, payload: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "state.bin").write_text(payload)
    (root / FINGERPRINT_FILE).write_text("{}")
    return root / name


def test_mirror_keeps_the_latest_checkpoint_and_the_root_files(tmp_path: Path) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_1", "one"), mirror)
    mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror)
    assert sorted(p.name for p in mirror.iterdir()) == [FINGERPRINT_FILE, "step_2"]
    assert sorted(p.name for p in mirror.parent.iterdir()) == ["stage"]  # no leftovers


def test_an_interrupted_copy_keeps_the_previous_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_1", "one"), mirror)

    def disconnect(*args: object, **kwargs: object) -> None:
        raise OSError("Transport endpoint is not connected")

    monkeypatch.setattr(shutil, "copytree", disconnect)
    with pytest.raises(OSError):
        mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror)
    assert (mirror / "step_1" / "state.bin").read_text() == "one"


def test_restore_only_where_no_local_checkpoint_is(tmp_path: Path) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror)
    assert not restore_checkpoint(root, mirror, is_step)  # the local one is newer or equal
    assert not restore_checkpoint(tmp_path / "elsewhere", None, is_step)
    fresh = tmp_path / "fresh"
    assert restore_checkpoint(fresh, mirror, is_step)
    assert (fresh / "step_2" / "state.bin").read_text() == "two"
    assert (fresh / FINGERPRINT_FILE).is_file()
