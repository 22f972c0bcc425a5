"""bench/drive_bytes.py: the Drive byte counter (strace of every write under "Drive"), and,
in the full_size group (make test-full-size), a whole Colab-layout run whose counted bytes
the cost model must bound."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import drive_bytes  # noqa: E402

WRITER = """
import os, shutil, sys
drive, outside = sys.argv[1], sys.argv[2]
os.makedirs(f"{drive}/checkpoints/finetune_sd", exist_ok=True)
os.makedirs(f"{drive}/checkpoints/.finetune_sd.spare/step_0000010", exist_ok=True)
os.makedirs(f"{drive}/checkpoints/redress", exist_ok=True)
os.makedirs(f"{drive}/dvc-remote/ab", exist_ok=True)
for size in (1000, 500):  # a file rewritten in place counts twice
    with open(f"{drive}/checkpoints/finetune_sd/model.safetensors", "wb") as f:
        f.write(b"x" * size)
with open(f"{drive}/checkpoints/.finetune_sd.spare/step_0000010/a", "wb") as f:
    f.write(b"z" * 7)  # the mirror's spare: a mirror write too
with open(f"{outside}/big.bin", "wb") as f:  # outside Drive: not counted
    f.write(b"y" * 70000)
shutil.copyfile(f"{outside}/big.bin", f"{drive}/dvc-remote/ab/cdef")  # sendfile
with open(f"{drive}/checkpoints/redress/0000000.npy.tmp", "wb") as f:
    os.writev(f.fileno(), [b"a" * 10, b"b" * 20])
os.replace(f"{drive}/checkpoints/redress/0000000.npy.tmp", f"{drive}/checkpoints/redress/0.npy")
with open(f"{drive}/dvc.lock", "w") as f:
    f.write("lock")
"""


def strace_works(tmp_path: Path) -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(
        ["strace", "-f", "-qq", "-o", str(tmp_path / "probe"), "true"], capture_output=True
    )
    return probe.returncode == 0


def test_every_byte_written_under_drive_is_counted_by_category(tmp_path: Path) -> None:
    if not strace_works(tmp_path):
        pytest.skip("strace is missing or may not trace here (apt install strace)")
    drive, outside, logs = tmp_path / "drive", tmp_path / "outside", tmp_path / "logs"
    for folder in (drive, outside, logs):
        folder.mkdir()
    cmd = [sys.executable, "-c", WRITER, str(drive), str(outside)]
    counted = drive_bytes.traced(cmd, drive, logs, env={"PATH": "/usr/bin:/bin"})
    assert counted == {"mirror": 1507, "remote": 70000, "batches": 30, "other": 4}


def test_strace_lines_name_the_written_file() -> None:
    lines = [
        'write(5</d/checkpoints/finetune_sd/a>, ""..., 4096) = 4096',
        'pwrite64(7</d/dvc-remote/x>, ""..., 100, 0) = 100',
        "sendfile(6</d/dvc-remote/y>, 5</src/y>, NULL, 8388608) = 300",
        "copy_file_range(5</src/z>, NULL, 6</d/dvc-remote/z>, NULL, 9, 0) = 9",
        'write(3</d2/elsewhere>, ""..., 10) = 10',  # a sibling folder's prefix: not Drive
        'write(1<pipe:[123]>, ""..., 10) = 10',
    ]
    assert drive_bytes.written_bytes(lines, "/d") == {
        "/d/checkpoints/finetune_sd/a": 4096,
        "/d/dvc-remote/x": 100,
        "/d/dvc-remote/y": 300,
        "/d/dvc-remote/z": 9,
    }


@pytest.mark.full_size
def test_a_colab_layout_run_writes_no_more_than_the_cost_model_counts(tmp_path: Path) -> None:
    """The whole pipeline at full size on the CPU (~25 min on 2 cores, ~30 GB of disk): per
    category, Drive gets at most what the cost model counts for the same params, so the
    model's count for profiles/colab.yaml (held to its budget in test_real_estimate.py)
    bounds a real Colab run's."""
    if not strace_works(tmp_path):
        pytest.skip("strace is missing or may not trace here (apt install strace)")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    standin = ROOT / "models" / "standin"
    if (standin / "BUILT").is_file() and (standin / "BUILT").read_text().strip() == "full":
        (clone / "models").mkdir(exist_ok=True)
        (clone / "models" / "standin").symlink_to(standin)
    run = subprocess.run(
        [sys.executable, "bench/drive_bytes.py"], cwd=clone, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("remote", "mirror", "batches"):
        assert result["measured"][name] <= result["model"][name] * 1.02 + 1e6, name
    assert result["measured"]["mirror"] > 0 and result["measured"]["batches"] > 0
    assert result["measured"]["other"] < 0.01 * sum(result["measured"].values())
