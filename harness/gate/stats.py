"""Paired statistics for base vs candidate on the same items: a bootstrap confidence interval
of the mean difference, and McNemar's exact test for pass/fail outcomes."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def paired_bootstrap_ci(base: list[float], cand: list[float], samples: int = 2000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """CI of mean(cand - base), resampling items (so both models keep their pairing)."""
    diff = np.asarray(cand, dtype=float) - np.asarray(base, dtype=float)
    if diff.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(samples, diff.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def mcnemar_exact(base: list[bool], cand: list[bool]) -> dict:
    """Two-sided exact McNemar test on the discordant pairs (b: base only, c: candidate only)."""
    b = sum(1 for x, y in zip(base, cand, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, cand, strict=True) if y and not x)
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"base_only": b, "candidate_only": c, "p_value": float(p)}
