"""CLIP under two CPU processes: features and caption ids gathered across processes.

The same global batch split over two processes (`accelerate launch`, gloo) gives the loss and,
after DDP's gradient averaging, the gradients of one process on the whole batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests/clip_gather_worker.py"


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", free_port(),
              str(WORKER), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT / "stages")}  # fmt: skip
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    reference = torch.load(tmp_path / "reference.pt")
    assert any(g.abs().max() > 1e-3 for g in reference["grads"].values())
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], reference["loss"], rtol=0, atol=1e-5)
        assert result["grads"].keys() == reference["grads"].keys()
        for name, grad in reference["grads"].items():
            torch.testing.assert_close(
                result["grads"][name],
                grad,
                rtol=0,
                atol=1e-5,
                msg=lambda m, name=name: f"{name}: {m}",
            )
