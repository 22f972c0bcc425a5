"""Params profiles: every key they set exists, and applying one changes only those keys."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{path}."))
        else:
            out[path] = value
    return out


def use_profile(params: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "use_profile.py"), "--params", str(params)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_changes_exactly_its_keys(profile: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = leaves(yaml.safe_load(params.read_text()))
    proc = use_profile(params, str(profile), "prepare.seed=7")
    assert proc.returncode == 0, proc.stderr
    after = leaves(yaml.safe_load(params.read_text()))
    wanted = {**leaves(yaml.safe_load(profile.read_text())), "prepare.seed": 7}
    assert after.keys() == before.keys()
    changed = {k for k in after if after[k] != before[k]}
    assert changed <= wanted.keys()
    assert all(after[k] == v for k, v in wanted.items())
    assert "# Parameters of every stage" in params.read_text()  # comments kept


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("finetune_sd.no_such_param=1", "unknown parameter 'finetune_sd.no_such_param'"),
        # the result is checked against the typed model before it is written
        ("generate.resolution=500", "generate.resolution: must be a multiple of 8, got 500"),
    ],
)
def test_a_bad_setting_is_refused_and_file_untouched(
    tmp_path: Path, setting: str, error: str
) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    original = params.read_text()
    proc = use_profile(params, setting)
    assert proc.returncode == 1
    assert error in proc.stderr and proc.stderr.count("\n") == 1
    assert params.read_text() == original
