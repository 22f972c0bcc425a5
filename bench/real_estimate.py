"""What a real run costs, stage by stage: hours on five GPUs, disk, Drive, and each rate's source.

Reads params.yaml with the given profiles applied (as `scripts/use_profile.py` would) and
prints one JSON line (bench/cost_model.py says how each figure is made); `--markdown`
prints the README's table instead.

    python bench/real_estimate.py profiles/real.yaml
    python bench/real_estimate.py profiles/real.yaml profiles/colab.yaml --markdown

A GPU run's logged throughput replaces the scaled training rates: `--run RUN_DIR --device
GPU` reads `dvclive/<stage>/plots/metrics/perf/images_per_s.tsv` (reshape: `maps_per_s`)
of a finished run (its median after the warm-up steps) for every training stage whose
settings equal the profile's; `--rate STAGE=PER_S --device GPU` gives one by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cost_model beside this script

from cost_model import GPUS, CostModel, Rate, StageCost, drive_peak_bytes, hours, stage_costs  # noqa: E402

from fashion.core.params import merged  # noqa: E402

WARMUP_STEPS = 3  # the first steps compile kernels and fill caches
# Settings a measured rate holds for (dotted params): a run measured at others says nothing
# of the profile.
SD_SETTINGS = ("resolution", "batch_size", "mode", "gradient_checkpointing", "lora_rank")
RATE_SETTINGS = {
    "finetune_clip": ("finetune_clip.batch_size",),
    "finetune_sd": tuple(f"finetune_sd.{k}" for k in SD_SETTINGS),
    "finetune_inpaint": (
        *(f"finetune_inpaint.{k}" for k in (*SD_SETTINGS, "cache_latents")),
        "base_inpaint.pretrained",
    ),
    "reshape": tuple(
        f"reshape.{k}"
        for k in ("batch_size", "width", "work_size", "text_dim", "coarse_size", "loss_size")
    ),
}
PERF_METRIC = {"reshape": "maps_per_s"}  # the others log images_per_s


def profile_params(params_file: Path, profiles: list[Path]) -> dict[str, Any]:
    params = yaml.safe_load(params_file.read_text())
    for profile in profiles:
        params = merged(params, yaml.safe_load(profile.read_text()) or {})
    return params


def setting(params: dict[str, Any], dotted: str) -> Any:
    section, key = dotted.split(".")
    return params.get(section, {}).get(key)


def measured_rate(run: Path, stage: str) -> float | None:
    """Median images (reshape: maps) a second of a run's stage after the warm-up steps
    (None: not logged)."""
    metric = PERF_METRIC.get(stage, "images_per_s")
    tsv = run / "dvclive" / stage / "plots" / "metrics" / "perf" / f"{metric}.tsv"
    if not tsv.is_file():
        return None
    rates = [float(row.split("\t")[-1]) for row in tsv.read_text().splitlines()[1:]]
    return statistics.median(rates[WARMUP_STEPS:] or rates) if rates else None


def measured_rates(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, dict[str, Rate]]:
    rates: dict[str, dict[str, Rate]] = {}
    if (args.run or args.rate) and args.device not in GPUS:
        raise SystemExit(f"--device must be one of {', '.join(GPUS)}, got {args.device!r}")
    if args.run:
        run_params = yaml.safe_load((args.run / "params.yaml").read_text())
        for stage, keys in RATE_SETTINGS.items():
            same = all(setting(run_params, k) == setting(params, k) for k in keys)
            rate = measured_rate(args.run, stage) if same else None
            if rate is not None:
                metric = PERF_METRIC.get(stage, "images_per_s")
                source = f"a run on the {args.device} ({args.run.name}, dvclive perf/{metric})"
                rates.setdefault(stage, {})[args.device] = Rate(rate, "measured", source)
    for text in args.rate:
        stage, value = text.split("=", 1)
        source = f"a run on the {args.device} (given with --rate)"
        rates.setdefault(stage, {})[args.device] = Rate(float(value), "measured", source)
    return rates


def summary(costs: dict[str, StageCost]) -> dict[str, Any]:
    stages = {
        name: {
            "work": c.work,
            "hours": {g: round(s / 3600, 3) for g, s in c.seconds.items()},
            "disk_gb": round(c.disk_bytes / 1e9, 3),
            "drive_gb": round((c.pushed_bytes + c.mirror_bytes + c.batches_bytes) / 1e9, 3),
            "sources": sorted(c.sources),
        }
        for name, c in costs.items()
    }
    return {
        "stages": stages,
        "total_hours": {g: round(hours(costs, g), 2) for g in GPUS},
        "disk_gb": round(sum(c.disk_bytes for c in costs.values()) / 1e9, 2),
        "drive_peak_gb": round(drive_peak_bytes(costs) / 1e9, 2),
    }


def markdown(costs: dict[str, StageCost]) -> str:
    head = "| stage | work | " + " | ".join(f"{g} h" for g in GPUS) + " | disk GB | Drive GB |"
    rows = [head, "|" + "---|" * (len(GPUS) + 4)]
    for name, c in costs.items():
        hrs = " | ".join(f"{c.seconds[g] / 3600:.2f}" for g in GPUS)
        drive = (c.pushed_bytes + c.mirror_bytes + c.batches_bytes) / 1e9
        rows.append(f"| {name} | {c.work} | {hrs} | {c.disk_bytes / 1e9:.2f} | {drive:.2f} |")
    totals = " | ".join(f"**{hours(costs, g):.1f}**" for g in GPUS)
    disk = sum(c.disk_bytes for c in costs.values()) / 1e9
    drive = drive_peak_bytes(costs) / 1e9
    rows.append(f"| **total** | | {totals} | {disk:.1f} | {drive:.1f} with G2.zip |")
    return "\n".join(rows)


def rates_markdown(model: CostModel) -> str:
    """The rates the table is built from, per GPU, each marked measured, published or
    scaled, with the sources below."""
    lora = {"mode": "lora", "resolution": 512}
    columns = {
        "SD sampling, image-steps/s": lambda g: model.sampling(g, 512),
        "SD LoRA training, images/s": lambda g: model.training("finetune_sd", g, lora),
        "CLIP training, images/s": lambda g: model.unit(g, "clip_train_image", "finetune_clip"),
        "VAE encodes/s": lambda g: model.unit(g, "vae_encode_512"),
    }
    rows = ["| GPU (512 px) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    sources: list[str] = []
    for gpu in GPUS:
        cells = []
        for rate in (column(gpu) for column in columns.values()):
            if rate.label() not in sources:
                sources.append(rate.label())
            cells.append(f"{rate.per_s:.3g} ({rate.kind[0]}{sources.index(rate.label()) + 1})")
        rows.append(f"| {gpu} | " + " | ".join(cells) + " |")
    notes = [f"{k + 1}. {label}" for k, label in enumerate(sources)]
    return "\n".join(rows + ["", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", type=Path, help="applied onto params.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--run", type=Path, help="a project folder after a GPU run")
    parser.add_argument(
        "--rate", action="append", default=[], help="STAGE=images/s (reshape: maps/s), measured"
    )
    parser.add_argument("--device", help=f"the GPU of --run/--rate: {', '.join(GPUS)}")
    parser.add_argument("--markdown", action="store_true", help="the README's table")
    parser.add_argument("--rates", action="store_true", help="the rates, with their sources")
    args = parser.parse_args()
    params = profile_params(args.params, args.profiles)
    model = CostModel(measured_rates(args, params))
    costs = stage_costs(params, model, args.params.parent)
    if args.rates:
        print(rates_markdown(model))
    elif args.markdown:
        print(markdown(costs))
    else:
        print(json.dumps({"profiles": [str(p) for p in args.profiles], **summary(costs)}))


if __name__ == "__main__":
    main()
