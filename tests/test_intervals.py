"""fashion.metrics.intervals against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.metrics.intervals import (
    bootstrap_mean,
    mean,
    paired_difference,
    proportion,
    recall_intervals,
    wilson,
)


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
    # method 3 (Wilson score, no continuity correction)
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],  # fmt: skip
)
def test_wilson_interval_matches_the_published_values(
    hits: int, n: int, low: float, high: float
) -> None:
    assert wilson(hits, n) == pytest.approx((low, high), abs=5e-5)


def test_a_proportion_carries_its_value_n_and_interval_as_sibling_keys() -> None:
    entry = proportion("color", np.array([True] * 81 + [False] * 182))
    assert entry["color"] == pytest.approx(81 / 263) and entry["color_n"] == 263
    assert (entry["color_ci95_low"], entry["color_ci95_high"]) == pytest.approx(
        (0.2553, 0.3662), abs=5e-5
    )
    empty = proportion("color", np.array([], dtype=bool))
    assert empty == {"color": None, "color_n": 0, "color_ci95_low": None, "color_ci95_high": None}


def test_a_bootstrap_interval_shrinks_by_the_square_root_of_the_sample_growth() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (500, 2000):
        low, high = bootstrap_mean(rng.normal(size=n), seed=1)
        widths.append(high - low)
    assert widths[0] / widths[1] == pytest.approx(np.sqrt(4), rel=0.15)


def test_a_bootstrap_interval_is_seeded_and_brackets_the_normal_one() -> None:
    values = np.random.default_rng(0).normal(loc=3.0, size=1000)
    assert bootstrap_mean(values, seed=5) == bootstrap_mean(values, seed=5)
    normal = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    low, high = bootstrap_mean(values, seed=5)
    assert low == pytest.approx(values.mean() - normal, abs=0.2 * normal)
    assert high == pytest.approx(values.mean() + normal, abs=0.2 * normal)
    entry = mean("distance", values, seed=5)
    assert entry["distance"] == pytest.approx(values.mean()) and entry["distance_n"] == 1000


def test_a_paired_difference_of_identical_scores_is_zero_with_zero_width() -> None:
    hits = np.random.default_rng(0).random(300) < 0.6
    entry = paired_difference("color", hits, hits.copy(), seed=0)
    assert entry == {"color": 0.0, "color_n": 300, "color_ci95_low": 0.0, "color_ci95_high": 0.0}


def test_pairing_removes_what_both_models_share() -> None:
    """Two models that agree on all but 10 of 400 items: the paired interval is far narrower
    than the difference of two independent intervals would be."""
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.5
    finetuned = base.copy()
    flipped = np.flatnonzero(~base)[:10]  # 10 misses of the base become hits
    finetuned[flipped] = True
    entry = paired_difference("color", base, finetuned, seed=0)
    assert entry["color"] == pytest.approx(10 / 400)
    assert 0 < entry["color_ci95_low"] < entry["color"] < entry["color_ci95_high"] < 0.05
    unpaired = 1.96 * np.sqrt(2 * 0.25 / 400)  # ~0.069 either side
    assert entry["color_ci95_high"] - entry["color_ci95_low"] < unpaired / 2
    with pytest.raises(ValueError, match="paired scores"):
        paired_difference("color", base, finetuned[:-1], seed=0)


def test_recall_intervals_are_the_wilson_intervals_of_the_hits() -> None:
    ranks = np.array([1, 1, 2, 7, 12, 1, 3, 40])
    out = recall_intervals(ranks)
    assert (out["r1_ci95_low"], out["r1_ci95_high"]) == wilson(3, 8)
    assert (out["r5_ci95_low"], out["r5_ci95_high"]) == wilson(5, 8)
    assert (out["r10_ci95_low"], out["r10_ci95_high"]) == wilson(6, 8)
