"""The declared decision rule: how a check's paired statistics become a status, and how the
statuses become a decision. The rule's settings live in conf/gate and are frozen with the
thresholds before eval, so nobody can pick the rule after seeing the numbers.

Each check compares a two-sided bootstrap CI (at `bootstrap.confidence`) of a candidate-vs-base
statistic with the check's margin L:

    rule          statistic                      L
    max_drop      mean(cand) - mean(base)        -fail   may lose at most `fail`
    min_gain      mean(cand) - mean(base)        +fail   must gain at least `fail`
    min_rel_gain  mean(cand) / mean(base) - 1    +fail   must gain at least `fail` x base
    max_rel_drop  mean(cand) / mean(base) - 1    -fail   may lose at most `fail` x base

    pass          CI lower bound >= L (confident the requirement holds)
    fail          CI upper bound <  L (confident it does not)
    inconclusive  the CI contains L, or fewer than `decision.min_items` paired items
    warn          a max_drop pass whose point estimate drops by more than `warn` (deploys)
    missing       the eval produced no paired items for the metric

For forgetting checks this is a non-inferiority test, for gains a superiority-by-margin test,
each one-sided at (1 - confidence) / 2. McNemar's exact p-value is reported for pass/fail
metrics but is not part of the rule: it tests for any difference, not for the margin.

A judge-based check (metric `judge.<criterion>`) counts only if the judge met the declared
`judge_reliability` thresholds on that criterion (measured by eval on known answers, see
harness/judge/reliability.py); otherwise its status is inconclusive, "judge unreliable",
with the figures, whatever its CI says.

A metric may pool several (`humaneval.pass@1 + mbpp.pass@1`): their items form one paired set,
which gives a forgetting check the power one benchmark lacks (harness/gate/power.py). A check
with `hold_on_inconclusive: false` can fail the gate but its inconclusive status does not hold
it (the per-benchmark forgetting checks beside the pooled one).

`max_rel_drop` is the forgetting check for a weak base model: at a 7.8% base pass rate (the
offline demo's) a 5-point `max_drop` margin is two thirds of everything the model can do, and
losing every pass (0 of 128 against 10) leaves its CI at [-0.125, -0.031], inconclusive; the
relative statistic's CI is [-1, -1] there, so "kept at least half of the base's passes" fails it,
while the demo's candidate (11 against 10, CI [-0.36, +1.0]) passes. For a strong base model
(60%) half of its passes is 30 points, so the absolute check stays the one that binds; beside it
the relative one only adds a way to fail.

Decision: no-deploy if any check fails or is missing (or the thresholds changed after eval);
otherwise inconclusive checks act as `decision.on_inconclusive` says (hold: the decision is
"inconclusive"); otherwise deploy.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.gate.stats import mcnemar_exact, paired_bootstrap, relative_gain

RULES = ("max_drop", "min_gain", "min_rel_gain", "max_rel_drop")
DROP_RULES = ("max_drop", "max_rel_drop")
RELATIVE_RULES = ("min_rel_gain", "max_rel_drop")
ON_INCONCLUSIVE = ("hold", "deploy", "no-deploy")
# `harness gate` exit codes, for deploy pipelines; 2 is a bad input (HarnessError).
EXIT_CODES = {"deploy": 0, "no-deploy": 3, "inconclusive": 4}
# judge_reliability threshold -> the measured figure it bounds (conf/gate/default.yaml)
RELIABILITY_FLOORS = {"min_accuracy": "accuracy", "min_pairwise_accuracy": "pairwise_accuracy",
                      "min_position_consistency": "position_consistency",
                      "min_self_tie_rate": "self_tie_rate"}
RELIABILITY_KEYS = ("min_pairs", *RELIABILITY_FLOORS, "max_first_position_bias",
                    "max_length_correlation")


def _fail(key: str, value: object, expected: str) -> HarnessError:
    return HarnessError(f"gate.{key}={value!r}: expected {expected}. Fix it in conf/gate/ (or on "
                        f"the command line) before eval starts: the thresholds are frozen then.")


def validate(gate: dict) -> None:
    """Refuse a gate config the rule cannot apply, naming the key."""
    def number(key: str, value: object, low: float, high: float | None = None) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= low
        if not ok or (high is not None and value > high):
            raise _fail(key, value, f"a number in [{low}, {high if high is not None else 'inf'}]")

    if not isinstance(gate.get("checks"), dict) or not gate["checks"]:
        raise _fail("checks", gate.get("checks"), "a mapping of named checks")
    for name, check in gate["checks"].items():
        if check is None:  # declared off (null)
            continue
        if not isinstance(check, dict) or not all(
                "." in p for p in str(check.get("metric", "")).split("+")):
            raise _fail(f"checks.{name}.metric", (check or {}).get("metric"),
                        "<task>.<field>, e.g. humaneval.pass@1 or judge.convention_adherence, "
                        "or metrics pooled with +, e.g. humaneval.pass@1 + mbpp.pass@1")
        if not isinstance(check.get("hold_on_inconclusive", True), bool):
            raise _fail(f"checks.{name}.hold_on_inconclusive", check["hold_on_inconclusive"],
                        "true or false")
        if check.get("rule") not in RULES:
            raise _fail(f"checks.{name}.rule", check.get("rule"), f"one of {RULES}")
        number(f"checks.{name}.fail", check.get("fail"), 0, 1 if check["rule"] == "max_rel_drop" else None)
        if "warn" in check:
            if check["rule"] != "max_drop":
                raise _fail(f"checks.{name}.warn", check["warn"], "no warn band (only max_drop has one)")
            number(f"checks.{name}.warn", check["warn"], 0, check["fail"])
    boot, decision = gate.get("bootstrap") or {}, gate.get("decision") or {}
    number("bootstrap.samples", boot.get("samples"), 100)
    number("bootstrap.confidence", boot.get("confidence"), 0.5, 0.999)
    number("bootstrap.seed", boot.get("seed"), 0)
    number("decision.min_items", decision.get("min_items"), 1)
    if (gate.get("power") or {}).get("flip_rate") is not None:
        number("power.flip_rate", gate["power"]["flip_rate"], 0.0001, 1)
    rel = gate.get("judge_reliability")
    if rel is not None:
        if not isinstance(rel, dict) or set(rel) - set(RELIABILITY_KEYS):
            raise _fail("judge_reliability", rel, f"a mapping with keys among {RELIABILITY_KEYS}")
        for key, value in rel.items():
            if value is not None:
                number(f"judge_reliability.{key}", value, *((1, None) if key == "min_pairs" else
                                                           (0, 0.5) if key.endswith("bias") else
                                                           (0, 1)))
    if decision.get("on_inconclusive") not in ON_INCONCLUSIVE:
        raise _fail("decision.on_inconclusive", decision.get("on_inconclusive"),
                    f"one of {ON_INCONCLUSIVE}")


def evaluate_check(name: str, check: dict, base: list[float], cand: list[float], gate: dict) -> dict:
    """One check's numbers and status under the declared rule (see the module docstring)."""
    rule, boot = check["rule"], gate["bootstrap"]
    margin = -check["fail"] if rule in DROP_RULES else check["fail"]
    statistic = "relative_gain" if rule in RELATIVE_RULES else "difference"
    row = {"name": name, **check, "n": len(base), "statistic": statistic, "margin": margin,
           "confidence": boot["confidence"]}
    if not base:
        return {**row, "status": "missing",
                "reason": f"no paired items for {check['metric']}: the eval produced none"}
    b, c = sum(base) / len(base), sum(cand) / len(cand)
    cis = paired_bootstrap(base, cand, boot["samples"], boot["confidence"], boot["seed"])
    row.update(base=b, candidate=c, delta=c - b, ci=list(cis["difference"]))
    if statistic == "relative_gain":
        row.update(relative_gain=float(relative_gain(c, b)), relative_gain_ci=list(cis[statistic]))
    if set(base) | set(cand) <= {0.0, 1.0}:
        row["mcnemar"] = mcnemar_exact([x == 1 for x in base], [x == 1 for x in cand])
    lo, hi = cis[statistic]
    where = f"the {boot['confidence']:.0%} CI [{lo:.4g}, {hi:.4g}] of the {statistic.replace('_', ' ')}"
    if len(base) < gate["decision"]["min_items"]:
        status, reason = "inconclusive", (f"only {len(base)} paired items (fewer than "
                                          f"decision.min_items={gate['decision']['min_items']})")
    elif lo >= margin:
        status, reason = "pass", f"{where} lies at or above {margin:g}"
        if rule == "max_drop" and "warn" in check and c - b < -check["warn"]:
            status, reason = "warn", f"{reason}, but the point estimate drops by more than {check['warn']:g}"
    elif hi < margin:
        status, reason = "fail", f"{where} lies below {margin:g}"
    else:
        status, reason = "inconclusive", f"{where} contains {margin:g}: too few items to tell"
    return {**row, "status": status, "reason": reason}


def is_judge_check(check: dict) -> bool:
    return str(check.get("metric", "")).partition(".")[0] == "judge"


def judge_reliability(measured: dict | None, thresholds: dict) -> dict:
    """Whether the judge's measured reliability on one criterion meets the declared thresholds:
    {reliable, figures, shortfalls, warnings}. Unmeasured figures fall short of any threshold."""
    m = measured or {}
    figures = {k: m.get(k) for k in ("pairs", *RELIABILITY_FLOORS.values(), "first_position_rate",
                                     "length_correlation")}
    short, warnings = [], []
    if measured is None:
        short.append("its reliability was not measured (judge.reliability.enabled is off, or "
                     "the eval predates it)")
    elif thresholds.get("min_pairs") is not None and (m.get("pairs") or 0) < thresholds["min_pairs"]:
        short.append(f"only {m.get('pairs') or 0} known-answer pairs (min_pairs "
                     f"{thresholds['min_pairs']}): not measured enough")
    else:
        for key, figure in RELIABILITY_FLOORS.items():
            low, value = thresholds.get(key), m.get(figure)
            if low is not None and (value is None or value < low):
                short.append(f"{figure.replace('_', ' ')} {_pct(value)} < {_pct(low)}")
        bias, rate = thresholds.get("max_first_position_bias"), m.get("first_position_rate")
        if bias is not None and (rate is None or abs(rate - 0.5) > bias):
            short.append(f"first-position rate {_pct(rate)} outside {_pct(0.5 - bias)}-"
                         f"{_pct(0.5 + bias)}")
    rho, most = m.get("length_correlation"), thresholds.get("max_length_correlation")
    if rho is not None and most is not None and abs(rho) > most:
        warnings.append(f"length bias: score vs response length Spearman rho {rho:.2f} "
                        f"(|rho| > {most:g})")
    return {"reliable": not short, "figures": figures, "shortfalls": short, "warnings": warnings}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def apply_judge_reliability(row: dict, measured: dict | None, thresholds: dict) -> dict:
    """A judge-based check's row, made inconclusive when the judge is unreliable on its
    criterion (a missing check stays missing: no data is worse than doubtful data)."""
    r = judge_reliability(measured, thresholds)
    row = {**row, "judge_reliability": r}
    if r["reliable"] or row["status"] == "missing":
        return row
    return {**row, "status": "inconclusive", "status_if_reliable": row["status"],
            "reason": f"judge unreliable: {'; '.join(r['shortfalls'])}. Were it reliable: "
                      f"{row['status']} ({row['reason']})"}


def decide(checks: list[dict], gate: dict, flags: list[str]) -> tuple[str, list[str]]:
    """The run's decision and the reasons for anything short of deploy. `flags` are problems
    found outside the checks (e.g. thresholds changed after eval); any flag means no-deploy."""
    by_status = {s: [c["name"] for c in checks if c["status"] == s
                     and (s != "inconclusive" or c.get("hold_on_inconclusive", True))]
                 for s in ("fail", "missing", "inconclusive")}
    reasons = list(flags) + [f"{s}: {', '.join(names)}" for s, names in by_status.items() if names]
    if flags or by_status["fail"] or by_status["missing"]:
        return "no-deploy", reasons
    if by_status["inconclusive"]:
        on = gate["decision"]["on_inconclusive"]
        return ("inconclusive" if on == "hold" else on), reasons
    return "deploy", reasons
