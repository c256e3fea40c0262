"""Paired statistics for base vs candidate on the same items: bootstrap confidence intervals of
the difference and of the relative gain, and McNemar's exact test for pass/fail outcomes."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def relative_gain(cand_mean: np.ndarray | float, base_mean: np.ndarray | float) -> np.ndarray:
    """cand / base - 1; a gain over a zero base is +inf, no change from zero is 0."""
    c, b = np.asarray(cand_mean, dtype=float), np.asarray(base_mean, dtype=float)
    fallback = np.where(c > b, np.inf, np.where(c < b, -np.inf, 0.0))
    return np.divide(c - b, b, out=fallback, where=b != 0)


def paired_bootstrap(base: list[float], cand: list[float], samples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Two-sided percentile CIs of mean(cand) - mean(base) ("difference") and of
    mean(cand) / mean(base) - 1 ("relative_gain"), resampling items so that both models keep
    their pairing. Quantiles are taken without interpolation (inverted CDF), so an infinite
    relative gain stays a well-defined bound instead of becoming NaN."""
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if b.size == 0:
        nan = (float("nan"), float("nan"))
        return {"difference": nan, "relative_gain": nan}
    idx = np.random.default_rng(seed).integers(0, b.size, size=(samples, b.size))
    base_means, cand_means = b[idx].mean(axis=1), c[idx].mean(axis=1)
    alpha = (1 - confidence) / 2

    def ci(values: np.ndarray) -> tuple[float, float]:
        lo, hi = np.quantile(values, [alpha, 1 - alpha], method="inverted_cdf")
        return float(lo), float(hi)

    return {"difference": ci(cand_means - base_means),
            "relative_gain": ci(relative_gain(cand_means, base_means))}


def paired_bootstrap_ci(base: list[float], cand: list[float], samples: int = 2000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """CI of mean(cand - base)."""
    return paired_bootstrap(base, cand, samples, confidence, seed)["difference"]


def mcnemar_exact(base: list[bool], cand: list[bool]) -> dict:
    """Two-sided exact McNemar test on the discordant pairs (b: base only, c: candidate only)."""
    b = sum(1 for x, y in zip(base, cand, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, cand, strict=True) if y and not x)
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"base_only": b, "candidate_only": c, "p_value": float(p)}
