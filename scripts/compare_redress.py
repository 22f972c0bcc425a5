"""Paired comparison of two redress settings on the same pairs, over seeds.

    python scripts/compare_redress.py --a RUN_A0 RUN_A1 ... --b RUN_B0 RUN_B1 ... \
        [--model finetuned] [--clip models/clip --base-clip models/base_clip]

Each RUN is a project folder where `redress` ran (data/redressed/, params.yaml, the subset);
all of them must hold the same pairs. Every image is judged as `evaluate_redress` judges it
(the fine-tuned and base CLIPs zero-shot, and the pixel colour judge). Per judge and
attribute, over the pairs that change it: each setting's target accuracy per seed and their
mean, and B - A as a paired difference: each pair's hit rate averaged over the seeds of
each setting, the difference bootstrapped over the pairs (`intervals.paired_difference`),
so the interval holds both the pairs' spread and, through the averaging, the seeds'. Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from evaluate_redress import read_redressed  # noqa: E402
from fashion.clip.models import load_base_clip, load_clip  # noqa: E402
from fashion.data.attributes import ATTRIBUTES  # noqa: E402
from fashion.data.subset import read_table, subset_path  # noqa: E402
from fashion.metrics.intervals import paired_difference, proportion  # noqa: E402
from fashion.metrics.judges import Judges  # noqa: E402
from fashion.metrics.redress import redress_hits  # noqa: E402


def run_hits(judges: Judges, run: Path, model: str) -> tuple[np.ndarray, dict]:
    """(the run's (source, target) rows, its per-judge per-attribute target hits)."""
    pairs, images = read_redressed(run / "data/redressed")
    split = "test" if pairs["split"].iloc[0] == "test" else "train"
    table = read_table(subset_path(run / "data/subset", split))
    source, target = pairs["source_row"].to_numpy(), pairs["target_row"].to_numpy()
    codes = table[list(ATTRIBUTES)]
    hits = redress_hits(
        judges,
        images[model],
        codes.iloc[source].reset_index(drop=True),
        codes.iloc[target].reset_index(drop=True),
    )
    return np.stack([source, target], 1), hits


def paired_over_seeds(a: list[np.ndarray], b: list[np.ndarray], seed: int) -> dict:
    """Each setting's accuracy per seed, and B - A: per pair, each setting's hit rate over
    its seeds, the difference bootstrapped over the pairs."""
    mean_a, mean_b = (np.mean(np.stack(v).astype(float), axis=0) for v in (a, b))
    return {
        "n": len(mean_a),
        "a_target_acc": [proportion("p", v)["p"] for v in a],
        "b_target_acc": [proportion("p", v)["p"] for v in b],
        **paired_difference("b_minus_a", mean_a, mean_b, seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", type=Path, required=True)
    parser.add_argument("--b", nargs="+", type=Path, required=True)
    parser.add_argument("--model", default="finetuned")
    parser.add_argument("--clip", type=Path, default=Path("models/clip"))
    parser.add_argument("--base-clip", type=Path, default=Path("models/base_clip"))
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap")
    args = parser.parse_args()
    judges = Judges(
        {"finetuned_clip": load_clip(args.clip), "base_clip": load_base_clip(args.base_clip)},
        True,
        64,
        "cpu",
    )
    settings: dict[str, list[dict]] = {"a": [], "b": []}
    pairs = None
    for name in ("a", "b"):
        for run in getattr(args, name):
            rows, hits = run_hits(judges, run, args.model)
            if pairs is None:
                pairs = rows
            elif not np.array_equal(rows, pairs):
                sys.exit(f"{run}: other pairs than {args.a[0]}")
            settings[name].append(hits)
    out: dict = {"a": [str(r) for r in args.a], "b": [str(r) for r in args.b]}
    for judge, by_attribute in settings["a"][0].items():
        for attribute in by_attribute:
            per_seed = {
                name: [h[judge][attribute]["target_acc"] for h in runs]
                for name, runs in settings.items()
            }
            mean = {
                name: np.mean(np.stack(v).astype(float), axis=0) for name, v in per_seed.items()
            }
            out.setdefault(judge, {})[attribute] = {
                "n": len(mean["a"]),
                **{
                    f"{name}_target_acc": [proportion("p", v)["p"] for v in per_seed[name]]
                    for name in per_seed
                },
                **paired_difference("b_minus_a", mean["a"], mean["b"], args.seed),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
