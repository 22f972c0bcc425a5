"""95% intervals of the headline metrics, laid beside each number as sibling keys.

A metric `m` of a block gains `m_n` (the items it was computed on), `m_ci95_low` and
`m_ci95_high` (recall@K: the intervals only, the block's `n` counts the queries), so
`dvc metrics show` and `dvc metrics diff` show them as columns next to it.

- Proportions (recall@K, attribute accuracy, redress target accuracy, leak and kept): Wilson
  score intervals (scipy's `binomtest`).
- Means (CLIP score, memorisation distance): a seeded percentile bootstrap.
- A paired difference (fine-tuned - base on the same items): a seeded bootstrap of the
  per-item differences.

The intervals say how far a number moves with another draw of the evaluated items, not with
another training run (docs/evaluation.md, "Uncertainty").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000


def wilson(hits: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion hits / n (n >= 1)."""
    ci = stats.binomtest(int(hits), int(n)).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_mean(values: np.ndarray, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of `values` (seeded: the same values and
    seed give the same interval). One value gives a zero-width interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or np.ptp(values) == 0:
        return float(values.mean()), float(values.mean())
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=LEVEL,
        n_resamples=RESAMPLES,
        method="percentile",
        batch=200,
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _entry(
    name: str, value: float | None, n: int, low: float | None, high: float | None
) -> dict[str, Any]:
    return {name: value, f"{name}_n": n, f"{name}_ci95_low": low, f"{name}_ci95_high": high}


def proportion(name: str, hits: np.ndarray) -> dict[str, Any]:
    """`name` (the share of true `hits`), its n and Wilson interval; None where n is 0."""
    hits = np.asarray(hits, dtype=bool)
    if not len(hits):
        return _entry(name, None, 0, None, None)
    return _entry(name, float(hits.mean()), len(hits), *wilson(int(hits.sum()), len(hits)))


def mean(name: str, values: np.ndarray, seed: int) -> dict[str, Any]:
    """`name` (the mean of per-item `values`), its n and bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    return _entry(name, float(values.mean()), len(values), *bootstrap_mean(values, seed))


def paired_difference(name: str, base: np.ndarray, other: np.ndarray, seed: int) -> dict[str, Any]:
    """`name` = mean(other) - mean(base) over the same items (per-item scores, e.g. 0/1 hits),
    with a paired bootstrap interval: items are resampled together, so what both models get
    right or wrong alike does not widen it. Identical scores give 0 with zero width."""
    base, other = np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if base.shape != other.shape:
        raise ValueError(f"paired scores of {base.shape} and {other.shape} items")
    if not len(base):
        return _entry(name, None, 0, None, None)
    difference = other - base
    return _entry(name, float(difference.mean()), len(base), *bootstrap_mean(difference, seed))


def recall_intervals(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """The Wilson intervals of recall@K from 1-based ranks: `rK_ci95_low/high` per K (the
    block's `n` is the number of queries)."""
    ranks = np.asarray(ranks)
    out: dict[str, Any] = {}
    for k in ks:
        entry = proportion(f"r{k}", ranks <= k)
        out |= {key: entry[key] for key in (f"r{k}_ci95_low", f"r{k}_ci95_high")}
    return out


def joined(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One block of the entries' sibling keys."""
    out: dict[str, Any] = {}
    for entry in entries:
        out |= entry
    return out
