"""Paired statistics: bootstrap CIs that keep the pairing, McNemar's exact test."""

from __future__ import annotations

import math

import pytest

from harness.gate.stats import mcnemar_exact, paired_bootstrap, paired_bootstrap_ci


def test_the_bootstrap_resamples_pairs_not_models():
    assert paired_bootstrap_ci([0.0] * 50, [1.0] * 50) == (1.0, 1.0)
    # swapped outcomes: each model passes half, so the difference is centred on zero
    lo, hi = paired_bootstrap_ci([0, 1] * 50, [1, 0] * 50)
    assert lo < 0 < hi
    # a constant per-item gain has no spread, however different the items are
    base = [float(i % 7) for i in range(40)]
    assert paired_bootstrap_ci(base, [b + 0.5 for b in base]) == (0.5, 0.5)
    assert paired_bootstrap_ci(base, base, seed=1) == paired_bootstrap_ci(base, base, seed=1)


def test_relative_gain_over_a_zero_base_is_infinite_not_nan():
    cis = paired_bootstrap([0.0] * 20, [1.0] * 5 + [0.0] * 15)
    lo, hi = cis["relative_gain"]
    assert not math.isnan(lo) and hi == math.inf
    assert cis["difference"][0] >= 0
    assert paired_bootstrap([2.0] * 10, [3.0] * 10)["relative_gain"] == (0.5, 0.5)


def test_mcnemar_counts_discordant_pairs():
    assert mcnemar_exact([True, True, False], [True, False, True]) == {
        "base_only": 1, "candidate_only": 1, "p_value": 1.0}
    result = mcnemar_exact([True] * 10 + [False] * 5, [False] * 10 + [False] * 5)
    assert result["base_only"] == 10 and result["p_value"] == pytest.approx(2 * 0.5 ** 10)
