"""Expected training time of a profile, from measured training throughput.

The rates come from a run on a GPU (the smoke run of the real path, or any real run): the
training stages log `perf/images_per_s` per step in dvclive; the median after the warm-up
steps is the stage's rate on that GPU at that run's batch size and resolution. The work
comes from the profile (steps x batch x accumulation). Another GPU is only a scaled guess:
`--scale T4=10` divides every rate by 10 and labels the figures as scaled.

    python bench/real_estimate.py --run RUN_DIR --device "H200" profiles/real.yaml
    python bench/real_estimate.py --rate finetune_sd=35.7 --device H100 profiles/real.yaml \
        profiles/colab.yaml --scale T4=10

Prints one JSON line. Stages without a measured rate are listed as not measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from fashion.core.params import merged

WARMUP_STEPS = 3  # the first steps compile kernels and fill caches
# Settings a measured rate holds for: a run measured at others says nothing of the profile.
SD_SETTINGS = ("resolution", "batch_size", "mode", "gradient_checkpointing", "lora_rank")
RATE_SETTINGS = {
    "finetune_clip": ("batch_size",),
    "finetune_sd": SD_SETTINGS,
    "finetune_inpaint": (*SD_SETTINGS, "base", "cache_latents"),
}
TRAINING_STAGES = tuple(RATE_SETTINGS)


def work(params: dict[str, Any]) -> int:
    """Images a training stage processes: steps x batch x accumulation."""
    steps = params["steps"]
    return int(steps) * int(params["batch_size"]) * int(params["grad_accum"])


def measured_rate(run: Path, stage: str) -> float | None:
    """Median images/s of a run's stage after the warm-up steps (None: not logged)."""
    tsv = run / "dvclive" / stage / "plots" / "metrics" / "perf" / "images_per_s.tsv"
    if not tsv.is_file():
        return None
    rows = tsv.read_text().splitlines()[1:]
    rates = [float(row.split("\t")[-1]) for row in rows]
    return statistics.median(rates[WARMUP_STEPS:] or rates) if rates else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", type=Path, help="applied onto params.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--run", type=Path, help="a project folder after a GPU run")
    parser.add_argument("--rate", action="append", default=[], help="STAGE=images/s, measured")
    parser.add_argument("--device", required=True, help="the GPU the rates were measured on")
    parser.add_argument("--scale", help="NAME=RATIO: NAME is RATIO times slower (a guess)")
    args = parser.parse_args()

    params = yaml.safe_load(args.params.read_text())
    for profile in args.profiles:
        params = merged(params, yaml.safe_load(profile.read_text()) or {})
    rates: dict[str, float | None] = {}
    if args.run:
        run_params = yaml.safe_load((args.run / "params.yaml").read_text())
        for stage, keys in RATE_SETTINGS.items():
            same = all(run_params[stage].get(k) == params[stage].get(k) for k in keys)
            rates[stage] = measured_rate(args.run, stage) if same else None
    rates |= {k: float(v) for k, v in (r.split("=", 1) for r in args.rate)}
    name, ratio = args.scale.split("=", 1) if args.scale else (None, "1")
    out: dict[str, Any] = {"profiles": [str(p) for p in args.profiles], "device": args.device}
    if name:
        out["scaled_to"] = {"device": name, "ratio": float(ratio), "note": "scaled, not measured"}
    for stage in TRAINING_STAGES:
        images, rate = work(params[stage]), rates.get(stage)
        row: dict[str, Any] = {"images": images, "images_per_s": rate}
        if rate is None:
            row["hours"] = f"not measured at {', '.join(RATE_SETTINGS[stage])} of the profile"
        else:
            row["hours"] = round(images / rate / 3600, 2)
            if name:
                row[f"hours_{name}_scaled"] = round(images / (rate / float(ratio)) / 3600, 2)
        out[stage] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
