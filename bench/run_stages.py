"""Run the pipeline stage by stage, in dvc.yaml order, and time each one.

    python bench/run_stages.py [--runner auto|dvc|direct] [--report smoke_report.md]

`dvc` runs `dvc repro --single-item STAGE` per stage; `direct` (for a machine without DVC)
runs each stage's `cmd` itself, with the `${section.key}` params of params.yaml substituted
as DVC would. `auto` takes dvc when it is importable. Per stage it records the wall time,
the peak resident memory of the stage's processes (wait4's ru_maxrss: the largest process)
and, where `nvidia-smi` exists, the peak GPU memory in use (polled every 100 ms: the CUDA
context and PyTorch's cached blocks included, i.e. what the GPU must hold, above
`torch.cuda.max_memory_allocated`). Writes a markdown table and one JSON line to the report
file; prints the JSON line on stdout, the stages' output and the table on stderr. Stops at the
first failing stage and shows the end of its output.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import yaml

PARAM_REF = re.compile(r"\$\{\s*([\w.-]+)\s*\}")
TAIL_LINES = 30
GPU_QUERY = ("--query-gpu=memory.used", "--format=csv,noheader,nounits")


@dataclass
class StageRun:
    stage: str
    seconds: float
    peak_gpu_mib: int | None
    peak_rss_mib: int
    returncode: int


# --- dvc.yaml ---------------------------------------------------------------------------------


def lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"error: params.yaml: no '{dotted}' (used in dvc.yaml)")
        value = value[part]
    return value


def substitute(cmd: str, params: dict[str, Any]) -> str:
    """`${accelerate.launch}` -> its value in params.yaml, as DVC interpolates a cmd."""
    return PARAM_REF.sub(lambda m: str(lookup(params, m.group(1))), cmd)


def stage_commands(dvc_yaml: Path, params_yaml: Path) -> dict[str, str]:
    """{stage: shell command} in dvc.yaml's order (its stages are listed in run order)."""
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    stages, params = pipeline["stages"], yaml.safe_load(params_yaml.read_text())
    for entry in pipeline.get("vars", []):  # dvc.yaml's own vars (dicts; files are not used)
        if isinstance(entry, dict):
            params = {**params, **entry}
    commands = {}
    for name, stage in stages.items():
        cmd = stage["cmd"]
        cmd = " && ".join(cmd) if isinstance(cmd, list) else cmd
        commands[name] = substitute(cmd, params)
    return commands


# --- measuring --------------------------------------------------------------------------------


class GpuMemoryPoller:
    """Peak `memory.used` (MiB, the largest over the GPUs) between `start` and `stop`."""

    def __init__(self) -> None:
        self.available = shutil.which("nvidia-smi") is not None
        self.peak = 0
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.available:
            return
        self.peak = 0
        self._proc = subprocess.Popen(
            ["nvidia-smi", *GPU_QUERY, "-lms", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip().isdigit():
                self.peak = max(self.peak, int(line))

    def stop(self) -> int | None:
        if self._proc is None:
            return None
        self._proc.terminate()
        self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._proc = None
        return self.peak


def python_on_path() -> dict[str, str]:
    """An environment whose `python` (and `accelerate`, `dvc`) are this interpreter's."""
    shim = Path(tempfile.mkdtemp(prefix="run-stages-bin-"))
    # a script, not a symlink: a virtual environment's python finds its pyvenv.cfg by path
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python").chmod(0o755)
    path = os.pathsep.join([str(shim), str(Path(sys.executable).parent), os.environ["PATH"]])
    return dict(os.environ, PATH=path, PYTHONUNBUFFERED="1")


def run_stage(name: str, argv: list[str], env: dict[str, str], log: IO[str]) -> StageRun:
    """Run one stage, echoing its output to stderr and the log; measure time and memory."""
    gpu = GpuMemoryPoller()
    gpu.start()
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        log.write(line)
        tail.append(line)
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of this stage's processes only
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    run = StageRun(name, round(seconds, 1), gpu.stop(), usage.ru_maxrss // 1024, proc.returncode)
    if proc.returncode != 0:
        tail_text = "".join(tail)
        print(
            f"\n--- {name} failed (exit {proc.returncode}); its last lines:\n{tail_text}",
            file=sys.stderr,
        )
    return run


# --- report -----------------------------------------------------------------------------------


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def markdown(runs: list[StageRun], title: str) -> str:
    rows = [
        f"| {r.stage} | {r.seconds:.1f} | {r.peak_gpu_mib if r.peak_gpu_mib is not None else '-'}"
        f" | {r.peak_rss_mib} | {'ok' if r.returncode == 0 else f'FAILED ({r.returncode})'} |"
        for r in runs
    ]
    total = sum(r.seconds for r in runs)
    return "\n".join(
        [
            f"### {title}",
            "",
            "| stage | seconds | peak GPU MiB | peak RSS MiB | status |",
            "|---|---:|---:|---:|---|",
            *rows,
            f"| **total** | {total:.1f} | | | |",
        ]
    )


def report(runs: list[StageRun], runner: str, path: Path) -> None:
    device = gpu_name() or "cpu"
    title = f"Smoke run ({runner} runner, {device}, {datetime.date.today()})"
    line = json.dumps(
        {
            "runner": runner,
            "device": device,
            "total_s": round(sum(r.seconds for r in runs), 1),
            "ok": all(r.returncode == 0 for r in runs),
            "stages": [asdict(r) for r in runs],
        }
    )
    text = f"{markdown(runs, title)}\n\n{line}\n"
    path.write_text(text)
    print(f"\n{text}\nreport written to {path}", file=sys.stderr)
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=("auto", "dvc", "direct"), default="auto")
    parser.add_argument("--report", type=Path, default=Path("smoke_report.md"))
    parser.add_argument("--log", type=Path, default=Path("smoke_stages.log"))
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stages", nargs="+", help="only these stages (default: all)")
    args = parser.parse_args(argv)

    runner = args.runner
    if runner == "auto":
        runner = "dvc" if importlib.util.find_spec("dvc") else "direct"
    commands = stage_commands(args.dvc_yaml, args.params)
    unknown = set(args.stages or ()) - commands.keys()
    if unknown:
        raise SystemExit(f"error: {args.dvc_yaml}: no stage {', '.join(sorted(unknown))}")
    if args.stages:
        commands = {name: cmd for name, cmd in commands.items() if name in args.stages}
    env = python_on_path()
    runs: list[StageRun] = []
    with args.log.open("w") as log:
        for name, cmd in commands.items():
            print(f"\n=== {name}: {cmd}", file=sys.stderr, flush=True)
            argv_ = (
                [sys.executable, "-m", "dvc", "repro", "--single-item", name]
                if runner == "dvc"
                else ["bash", "-c", cmd]
            )
            runs.append(run_stage(name, argv_, env, log))
            if runs[-1].returncode != 0:
                break
    report(runs, runner, args.report)
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
