"""Mean ± sd of each metric across experiments (e.g. training seeds), as a markdown table.

Reads `dvc exp show --json` (run here, or a saved copy with --json) and takes the finished
experiments, all of them or those named. Per metric: the mean and the sample sd across them,
each run's value, and the mean half-width of a run's own 95% interval (its `_ci95_low` and
`_ci95_high` siblings: the spread the evaluated items alone explain). A difference between
two settings is a signal when it beats the seed sd (docs/evaluation.md):

    dvc exp run --queue -S 'training.seed=0,1,2'   # three experiments, one per seed
    dvc queue start && dvc queue status      # wait until all are done
    python scripts/seed_table.py --match 'attr_acc|\\.r1$|target_acc'
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

INTERVAL_KEY = re.compile(r"_(n|ci95_low|ci95_high)$")


def finished_experiments(shown: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """name -> the data (params, metrics) of every experiment `dvc exp show --json` lists as
    finished without error (queued, running and failed ones are left out)."""
    out = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            executor = experiment.get("executor") or {}
            if executor.get("state") not in (None, "success"):
                continue
            for rev in experiment["revs"]:
                data = rev.get("data") or {}
                if rev.get("error") or not data.get("metrics"):
                    continue
                out[rev.get("name") or rev["rev"][:7]] = data
    return out


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested mapping's leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def numbers(data: dict[str, Any]) -> dict[str, float]:
    """file:metric -> value of every numeric metric (intervals' siblings included)."""
    out = {}
    for file, content in data["metrics"].items():
        for key, value in flat(content.get("data") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"{file}:{key}"] = float(value)
    return out


def seed_rows(runs: dict[str, dict[str, float]], match: str | None) -> list[dict[str, Any]]:
    """One row per metric every run has (its intervals' siblings left out)."""
    names = list(runs)
    shared = set.intersection(*(set(values) for values in runs.values()))
    rows = []
    for key in sorted(k for k in shared if not INTERVAL_KEY.search(k)):
        if key.split(":", 1)[1].startswith("environment.") or (match and not re.search(match, key)):
            continue
        values = np.array([runs[name][key] for name in names])
        halves = [
            (runs[name][f"{key}_ci95_high"] - runs[name][f"{key}_ci95_low"]) / 2
            for name in names
            if f"{key}_ci95_low" in runs[name]
        ]
        rows.append(
            {
                "metric": key,
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "values": values.tolist(),
                "ci95_half_width": float(np.mean(halves)) if halves else None,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    lines = [
        f"| metric | mean ± sd ({len(names)} runs) | {' | '.join(names)} | a run's 95% CI ± |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in rows:
        half = "" if row["ci95_half_width"] is None else f"{row['ci95_half_width']:.3f}"
        values = " | ".join(f"{v:.3f}" for v in row["values"])
        lines.append(
            f"| {row['metric']} | {row['mean']:.3f} ± {row['sd']:.3f} | {values} | {half} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", help="names to take (default: all finished)")
    parser.add_argument("--json", type=Path, help="a saved `dvc exp show --json` (default: run it)")
    parser.add_argument("--match", help="only metrics whose file:key matches this regex")
    args = parser.parse_args(argv)
    if args.json:
        shown = json.loads(args.json.read_text())
    else:
        cmd = ["dvc", "exp", "show", "--json"]
        shown = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    experiments = finished_experiments(shown)
    missing = [name for name in args.experiments if name not in experiments]
    if missing:
        print(f"seed_table: no finished experiment named {missing}", file=sys.stderr)
        return 1
    names = args.experiments or sorted(experiments)
    if len(names) < 2:
        print(f"seed_table: need 2 or more finished experiments, found {names}", file=sys.stderr)
        return 1
    runs = {name: numbers(experiments[name]) for name in names}
    print(markdown(seed_rows(runs, args.match), names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
