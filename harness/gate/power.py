"""What a paired check can decide with its number of items, stated before and after eval.

For a pass/fail metric, a paired difference only moves when items flip (pass for one model, fail
for the other). With n items of which a share f flip, half each way (no net change), the
difference has standard error sqrt(f / n), so its CI at confidence c has half-width
z((1 + c) / 2) * sqrt(f / n). A max_drop check with margin m can only pass when that half-width
is below m: with 164 HumanEval items and 12% flipping it is 0.050, so a 5-point margin is
inconclusive even when nothing changed. The minimal detectable effect (MDE) is the true shift
the check detects with 80% power: (z((1 + c) / 2) + z(0.8)) * sqrt(f / n).

`flip_rate` comes from `gate.power.flip_rate` before eval (declared), from the base model run
twice with an innocuous change (the noise floor, `eval.noise_floor`) when measured, and from
the discordant pairs actually observed after eval.
"""

from __future__ import annotations

from math import sqrt

from scipy.stats import norm

from harness.eval.tasks import pass_fail_fields
from harness.gate.rules import RELATIVE_RULES

POWER = 0.8


def half_width(n: int, flip_rate: float, confidence: float) -> float:
    """Expected CI half-width of a paired difference of pass rates at no net change."""
    return float(norm.ppf((1 + confidence) / 2) * sqrt(flip_rate / n)) if n else float("inf")


def min_detectable_effect(n: int, flip_rate: float, confidence: float) -> float:
    return float((norm.ppf((1 + confidence) / 2) + norm.ppf(POWER)) * sqrt(flip_rate / n)) if n else float("inf")


def check_power(name: str, check: dict, n: int, flip_rate: float, confidence: float,
                source: str, base_rate: float | None = None) -> dict:
    """The figures for one pass/fail check, and a warning when its margin is below what its
    items can resolve (it would be inconclusive at no change: a configuration error). A
    relative margin is stated in points (`fail` x `base_rate`, once the base's rate is known)
    but not judged decidable or not: its check reads the CI of the ratio, which this normal
    approximation of the difference does not describe (the offline demo's relative check
    passed with a margin of 0.039 against a half-width of 0.041)."""
    hw = half_width(n, flip_rate, confidence)
    out = {"n": n, "flip_rate": flip_rate, "flip_rate_source": source,
           "half_width": round(hw, 4), "mde": round(min_detectable_effect(n, flip_rate, confidence), 4)}
    if check.get("rule") in RELATIVE_RULES:
        return {**out, "margin": round(check["fail"] * base_rate, 4) if base_rate else None,
                "decidable": None}
    out.update(margin=check["fail"], decidable=check["fail"] > hw)
    if not out["decidable"]:
        out["warning"] = (
            f"gate check {name}: with {n} items and {flip_rate:.0%} of them flipping, the "
            f"{confidence:.0%} CI of the difference is about ±{hw:.3f} wide at no change, more "
            f"than the margin {check['fail']:g}: the check cannot pass. Fix: pool benchmarks "
            f"(metric a + b), sample n answers per problem (eval.n_samples), or declare a margin "
            f"above {hw:.3f}.")
    return out


def is_pass_fail(metric: str) -> bool:
    """Metrics whose per-item values are 0/1, as the tasks declare them (pass@1 of execution
    tasks, exact match of FIM)."""
    fields = pass_fail_fields()
    return all(p.strip().partition(".")[2] in fields for p in metric.split("+"))


def parts(metric: str) -> list[str]:
    """`humaneval.pass@1 + mbpp.pass@1` (a pooled check) → its metrics."""
    return [p.strip() for p in metric.split("+")]
