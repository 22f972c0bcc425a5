"""scripts/compare_redress.py's paired comparison over seeds, on known answers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from compare_redress import paired_over_seeds  # noqa: E402


def test_seeds_are_averaged_per_pair_before_the_paired_difference() -> None:
    a = [np.array([1, 0, 0, 0], bool), np.array([0, 0, 0, 1], bool)]
    b = [np.array([1, 1, 0, 1], bool), np.array([1, 1, 1, 1], bool)]
    out = paired_over_seeds(a, b, seed=0)
    assert out["n"] == 4
    assert out["a_target_acc"] == [0.25, 0.25] and out["b_target_acc"] == [0.75, 1.0]
    # per pair: a 0.5, 0, 0, 0.5; b 1, 1, 0.5, 1 -> differences 0.5, 1, 0.5, 0.5
    assert out["b_minus_a"] == pytest.approx(0.625)
    assert 0.5 <= out["b_minus_a_ci95_low"] <= 0.625 <= out["b_minus_a_ci95_high"] <= 1.0
    same = paired_over_seeds(a, a, seed=0)
    assert same["b_minus_a"] == 0 and same["b_minus_a_ci95_low"] == same["b_minus_a_ci95_high"]
