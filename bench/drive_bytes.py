"""Every byte a Colab-layout run writes to Drive, counted, beside the cost model's count.

    python bench/drive_bytes.py [--keep]       in a scratch clone (params.yaml is rewritten)

Runs the whole pipeline as colab.ipynb does, stage by stage: `dvc repro STAGE`, `dvc push`
to a remote on "Drive", `scripts/uncached_outputs.py save`, dvc.lock copied there; with
the checkpoint mirrors and the finished batches of generate and redress on "Drive" too
(profiles/colab.yaml's layout). "Drive" is a scratch folder. The run is the full-size
smoke on the CPU (bench/gpu_smoke.sh --cpu --full: the published architectures as
stand-ins with random weights, models/standin, built when missing) with profiles real +
colab + smoke + smoke-cpu: Colab's settings, the smoke run's steps and sizes.

strace counts what every process writes into a file under "Drive" (write, pwrite64,
writev, pwritev, sendfile, copy_file_range: what each returned), so a file rewritten
counts each time, and nothing written is taken back: Drive's bin keeps what is deleted.
The count goes per stage into remote (the DVC remote), mirror (checkpoint mirrors),
batches (finished batches) and other (uncached outputs, dvc.lock). `model` beside each is
the cost model's (bench/cost_model.py) for the same params, "all" resolved to the demo
benchmark's counts; the model counts images raw (uint8), an upper bound for PNG, and no
`other`. The totals leave out `demo_benchmark`: it stands in for G2.zip, which the model
counts apart. Prints one JSON line. Needs strace (apt install strace).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cost_model
import yaml

from fashion.data.subset import read_table, subset_path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("real", "colab", "smoke", "smoke-cpu")
SPLITS = ("train", "test")
STANDIN = Path("models/standin")
# folders under Drive's checkpoints/ -> category (a mirror's spare and trash sit beside it,
# as .NAME.spare and .NAME.trash: fashion.train.checkpoint_mirror)
CHECKPOINT_CATEGORIES = {
    "finetune_clip": "mirror",
    "finetune_sd": "mirror",
    "finetune_inpaint": "mirror",
    "generate": "batches",
    "redress": "batches",
}
WRITES = "write,pwrite64,writev,pwritev,pwritev2,sendfile,copy_file_range"
# strace -y: `name(fd<path>, ...) = n`; copy_file_range writes to its third argument
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(\d+)")
FD_PATH = re.compile(r"\d+<([^>]*)>")


def written_bytes(log_lines: list[str], drive: str) -> dict[str, int]:
    """Bytes written per file under `drive`, from `strace -y` lines of the write calls."""
    out: dict[str, int] = defaultdict(int)
    for line in log_lines:
        call = CALL.match(line.strip())
        if not call:
            continue
        name, args, returned = call.groups()
        paths = FD_PATH.findall(args)
        if not paths:
            continue
        target = paths[1] if name == "copy_file_range" and len(paths) > 1 else paths[0]
        if target.startswith(drive.rstrip("/") + "/"):
            out[target] += int(returned)
    return dict(out)


def category(path: str, drive: str) -> str:
    parts = Path(path[len(drive.rstrip("/")) + 1 :]).parts
    if parts and parts[0] == "dvc-remote":
        return "remote"
    if len(parts) > 1 and parts[0] == "checkpoints":
        name = parts[1].lstrip(".").removesuffix(".spare").removesuffix(".trash")
        return CHECKPOINT_CATEGORIES.get(name, "other")
    return "other"


def traced(cmd: list[str], drive: Path, logs: Path, env: dict[str, str]) -> dict[str, int]:
    """Run `cmd` under strace (one log per process); bytes written per category."""
    for old in logs.glob("trace.*"):
        old.unlink()
    strace = ["strace", "-f", "-ff", "-qq", "-y", "-s", "0", "-e", f"trace={WRITES}"]
    strace += ["-e", "signal=none", "-o", str(logs / "trace")]
    try:
        subprocess.run([*strace, "--seccomp-bpf", *cmd], check=True, env=env, stdout=sys.stderr)
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"error: {' '.join(cmd)} exited {err.returncode}") from err
    lines = [ln for f in logs.glob("trace.*") for ln in f.read_text(errors="replace").splitlines()]
    by_category: dict[str, int] = defaultdict(int)
    for path, n in written_bytes(lines, str(drive)).items():
        by_category[category(path, str(drive))] += n
    return dict(by_category)


def model_bytes(params: dict, n_train: int, n_test: int) -> dict[str, dict[str, float]]:
    """The cost model's Drive bytes per stage for `params`, 'all' meaning the demo's counts."""
    params = json.loads(json.dumps(params))
    params["prepare"].update(n_train_images=n_train, n_test_images=n_test)
    costs = cost_model.stage_costs(params, cost_model.CostModel(), ROOT)
    return {
        stage: {"remote": c.pushed_bytes, "mirror": c.mirror_bytes, "batches": c.batches_bytes}
        for stage, c in costs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch Drive folder")
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="reduced-width stand-ins: checks the run in minutes, but the cost model counts "
        "the published sizes, so the two columns do not compare",
    )
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("error: strace is missing (apt install strace)")
    os.chdir(ROOT)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(os.cpu_count() or 1))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1")
    env["PYTHONPATH"] = f"{ROOT / 'stages'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    built, size = STANDIN / "BUILT", "reduced" if args.reduced else "full"
    if not built.is_file() or built.read_text().strip() != size:
        build = [sys.executable, "scripts/standin_models.py", str(STANDIN), "--device", "cpu"]
        subprocess.run(build + ["--reduced"] * args.reduced, check=True, env=env, stdout=sys.stderr)
        built.write_text(f"{size}\n")
    scratch = Path(tempfile.mkdtemp(prefix="drive-bytes-"))
    drive, logs = scratch / "drive", scratch / "logs"
    logs.mkdir(parents=True)
    mirror = drive / "checkpoints"
    layout = [  # colab.ipynb's, under the scratch "Drive"
        f"finetune_sd.checkpoint_mirror={mirror}/finetune_sd",
        f"finetune_inpaint.checkpoint_mirror={mirror}/finetune_inpaint",
        f"generate.batches_dir={mirror}/generate",
        f"redress.batches_dir={mirror}/redress",
    ]
    profiles = [f"profiles/{p}.yaml" for p in PROFILES]
    py = sys.executable
    quiet = {"check": True, "env": env, "stdout": sys.stderr}  # stdout: the JSON line only
    subprocess.run([py, "scripts/use_profile.py", *profiles, *layout], **quiet)
    subprocess.run(["dvc", "remote", "add", "--local", "--default", "--force", "drive",
                    str(drive / "dvc-remote")], **quiet)  # fmt: skip
    params = yaml.safe_load(Path("params.yaml").read_text())
    stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    measured: dict[str, dict[str, int]] = {}
    began = time.perf_counter()
    for stage in stages:  # the stage itself writes its mirror and finished batches
        counts: dict[str, int] = defaultdict(int)
        for cmd in (
            ["dvc", "repro", stage],
            ["dvc", "push"],
            [py, "scripts/uncached_outputs.py", "save", str(drive / "uncached")],
            ["cp", "dvc.lock", str(drive / "dvc.lock")],
        ):
            for k, v in traced(cmd, drive, logs, env).items():
                counts[k] += v
        measured[stage] = dict(counts)
        print(f"drive_bytes: {stage}: {dict(counts)}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - began
    n_train, n_test = (len(read_table(subset_path(Path("data/subset"), s))) for s in SPLITS)
    model = model_bytes(params, n_train, n_test)
    rows = {}
    for stage in stages:
        key = "labels+eda" if stage in ("labels", "eda") else stage
        rows[stage] = {"measured": measured.get(stage, {}), "model": model.get(key, {})}
    # demo_benchmark stands in for G2.zip, which the cost model counts apart (G2_ZIP_BYTES)
    compared = {k: r for k, r in rows.items() if k != "demo_benchmark"}
    total = {c: sum(r["measured"].get(c, 0) for r in compared.values()) for c in
             ("remote", "mirror", "batches", "other")}  # fmt: skip
    total_model = {c: sum(m.get(c, 0) for m in model.values()) for c in
                   ("remote", "mirror", "batches")}  # fmt: skip
    print(
        json.dumps(
            {
                "bench": "drive_bytes",
                "profiles": list(PROFILES),
                "stand_ins": size,
                "seconds": round(seconds),
                "n_train": n_train,
                "n_test": n_test,
                "measured": total,
                "model": {k: round(v) for k, v in total_model.items()},
                "stages": rows,
            }
        )
    )
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
