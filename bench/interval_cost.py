"""What the metrics' 95% intervals cost the demo: every Wilson interval and bootstrap the
three evaluation stages compute, at the demo default's sizes, on random verdicts.

    python bench/interval_cost.py [--rounds 5]

Prints one JSON line: per stage, the median seconds of its interval work over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from fashion.metrics.intervals import mean, paired_difference, proportion, recall_intervals

# the demo default: eval_clip on 1,794 test pairs (subsets of 19 and 4), evaluate on 600
# matched images per set, evaluate_redress on 300 pairs
CLIP_PAIRS, SUBSETS, MATCHED, PAIRS = 1794, (19, 4), 600, 300
JUDGES, ATTRIBUTES, REDRESS_ATTRIBUTES = 3, 4, 3


def eval_clip(rng: np.random.Generator) -> None:
    for _ in range(2):  # base, fine-tuned
        for n in (CLIP_PAIRS,) * 3 + SUBSETS * 2:  # i2t, t2i, i2t_distinct; both subsets
            recall_intervals(rng.integers(1, 20, n))
        for a in range(ATTRIBUTES):
            proportion(str(a), rng.random(CLIP_PAIRS) < 0.5)


def evaluate(rng: np.random.Generator) -> None:
    hits = {}
    for model in ("base", "finetuned", "real"):
        hits[model] = [rng.random(MATCHED) < 0.5 for _ in range(JUDGES * ATTRIBUTES)]
        for verdicts in hits[model]:
            proportion("a", verdicts)
        for _ in range(2):  # CLIP score by both CLIPs
            mean("clip_score", rng.normal(50, 10, MATCHED), seed=0)
        mean("nearest_train_pixels", rng.random(MATCHED), seed=0)
    for base, tuned in zip(hits["base"], hits["finetuned"], strict=True):
        paired_difference("a", base, tuned, seed=0)


def evaluate_redress(rng: np.random.Generator) -> None:
    changed = PAIRS * 2 // 3
    for _ in ("base", "finetuned", "ceiling"):
        for _ in range(JUDGES * REDRESS_ATTRIBUTES):
            for share in ("target_acc", "source_leak"):
                proportion(share, rng.random(changed) < 0.5)
            proportion("kept", rng.random(PAIRS - changed) < 0.5)
    for _ in range(JUDGES * REDRESS_ATTRIBUTES * 2):  # target_acc and source_leak gains
        paired_difference("a", rng.random(changed) < 0.5, rng.random(changed) < 0.6, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    stages = {"eval_clip": eval_clip, "evaluate": evaluate, "evaluate_redress": evaluate_redress}
    times: dict[str, list[float]] = {name: [] for name in stages}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):  # interleaved
        for name, work in stages.items():
            start = time.perf_counter()
            work(rng)
            times[name].append(time.perf_counter() - start)
    medians = {name: round(statistics.median(t), 3) for name, t in times.items()}
    print(json.dumps({"rounds": args.rounds, "median_s": medians,
                      "total_s": round(sum(medians.values()), 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
