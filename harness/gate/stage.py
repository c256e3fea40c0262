"""The gate stage: frozen thresholds + eval samples → `verdict.json` (deploy / no-deploy /
inconclusive).

Every check pairs base and candidate per item (the same problem, hole or change request) and
applies the declared rule (harness/gate/rules.py) to the paired statistics. `verdict.json`
carries every number behind the decision: per check the means, the difference and its CI,
the relative gain where the rule uses it, McNemar's test for pass/fail metrics, the items
without a partner, the status and the reason (for a judge check, also the judge's reliability
as eval measured it, against the frozen `judge_reliability` thresholds); plus the frozen rule,
its hash and time, and anything that makes the thresholds untrustworthy. `harness gate` exits with
rules.EXIT_CODES[decision]: 0 deploy, 3 no-deploy, 4 inconclusive (2: bad input).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from harness.eval.tasks import TASKS
from harness.gate.power import check_power, is_pass_fail, parts
from harness.gate.rules import (
    EXIT_CODES,
    apply_judge_reliability,
    decide,
    evaluate_check,
    is_judge_check,
    validate,
)
from harness.gate.thresholds import load_frozen
from harness.io import atomic_write_json, read_json, read_jsonl
from harness.rundir import METRICS, MODELS, VERDICT, samples, stage_dir
from harness.stages import require_output

log = logging.getLogger(__name__)


def paired_values(eval_dir: Path, metric: str) -> tuple[list[float], list[float], dict[str, int]]:
    """Per-item values of `metric` for base and candidate on the items both have (from the
    samples files in `eval_dir`; which file and which row field, the task says:
    harness/eval/tasks), and how many items only one of them has (e.g. a judge reply that
    stayed unreadable for one model). A pooled metric (`a + b`) is the items of each part
    together; a part with no data is none."""
    if "+" in metric:
        base, cand, unpaired = [], [], {f"{label}_only": 0 for label in MODELS}
        for part in parts(metric):
            b, c, u = paired_values(eval_dir, part)
            if not b:
                return [], [], {}
            base += b
            cand += c
            unpaired = {k: v + u.get(k, 0) for k, v in unpaired.items()}
        return base, cand, unpaired
    name, _, field = metric.partition(".")
    task = TASKS.get(name)
    if task is None:  # not a registered task: no data (the check is inconclusive)
        return [], [], {}
    # With n samples per item (sampling, pass@k) an item's value is the mean over its samples.
    samples_of: dict[str, dict[str, list[float]]] = {}
    for label in MODELS:
        path = eval_dir / samples(task.scored, label)
        if not path.exists():
            return [], [], {}
        for r in read_jsonl(path):
            if (v := task.value(r, field)) is not None:
                samples_of.setdefault(r["item_id"], {}).setdefault(label, []).append(float(v))
    values = {i: {lb: sum(vs) / len(vs) for lb, vs in by.items()} for i, by in samples_of.items()}
    items = sorted(i for i, v in values.items() if len(v) == 2)
    unpaired = {f"{label}_only": sum(1 for v in values.values() if set(v) == {label})
                for label in MODELS}
    return [values[i]["base"] for i in items], [values[i]["candidate"] for i in items], unpaired


def observed_power(name: str, check: dict, base: list[float], cand: list[float], gate: dict,
                   eval_dir: Path) -> dict:
    """What the check could resolve with the flips actually seen, beside the noise floor (the
    base model's flips between two innocuous runs) when eval measured it."""
    flips = sum(1 for b, c in zip(base, cand, strict=True) if b != c)
    confidence = gate["bootstrap"]["confidence"]
    out = check_power(name, check, len(base), max(flips, 1) / len(base), confidence, "observed",
                      base_rate=sum(base) / len(base))
    metrics = eval_dir / METRICS
    floor = (read_json(metrics).get("noise_floor") or {}) if metrics.exists() else {}
    measured = [floor[p.partition(".")[0]] for p in parts(check["metric"])
                if p.partition(".")[0] in floor]
    if measured:
        n, f = sum(m["n"] for m in measured), sum(m["flips"] for m in measured)
        out["noise_floor"] = {"n": n, "flips": f, "flip_rate": f / n if n else None}
    return {**out, "flips": flips}


def judge_reliability(eval_dir: Path, criterion: str) -> dict | None:
    """What eval measured of the judge on `criterion` (judge_reliability.py), with the
    correlation of its scores with response length; None if it was not measured."""
    metrics = eval_dir / METRICS
    judge = (read_json(metrics).get("judge") or {}) if metrics.exists() else {}
    measured = ((judge.get("reliability") or {}).get("criteria") or {}).get(criterion)
    if measured is None:
        return None
    rho = ((judge.get("length_bias") or {}).get(criterion) or {}).get("spearman")
    return {**measured, "length_correlation": rho}


def run(cfg: DictConfig, out: Path) -> dict:
    eval_dir = require_output(cfg, "eval")
    frozen, flags = load_frozen(cfg.run_dir, cfg.gate)
    gate = frozen["gate"]
    validate(gate)
    for flag in flags:
        log.warning("%s; judging with the frozen thresholds, and the decision is no-deploy", flag)
    checks = []
    for name, check in gate["checks"].items():
        base, cand, unpaired = paired_values(eval_dir, check["metric"])
        row = {**evaluate_check(name, dict(check), base, cand, gate), "unpaired": unpaired}
        if base and is_pass_fail(check["metric"]):
            row["power"] = observed_power(name, check, base, cand, gate, eval_dir)
        if gate.get("judge_reliability") is not None and is_judge_check(check):
            row = apply_judge_reliability(
                row, judge_reliability(eval_dir, check["metric"].partition(".")[2]),
                gate["judge_reliability"])
        checks.append(row)
    decision, reasons = decide(checks, gate, flags)
    verdict = {
        "decision": decision,
        "exit_code": EXIT_CODES[decision],
        "reasons": reasons,
        "checks": checks,
        "bootstrap": gate["bootstrap"],
        "decision_rule": gate["decision"],
        "judge_reliability": gate.get("judge_reliability"),
        "thresholds_sha256": frozen["sha256"],
        "thresholds_frozen_at": frozen["frozen_at"],
        "thresholds_changed_after_eval": bool(flags),
        "threshold_flags": flags,
    }
    atomic_write_json(out / VERDICT, verdict)
    for c in checks:
        log.info("gate %-22s %-12s base=%s candidate=%s  %s", c["name"], c["status"],
                 _fmt(c.get("base")), _fmt(c.get("candidate")), c["reason"])
    log.info("decision: %s%s → %s", decision, f" ({'; '.join(reasons)})" if reasons else "",
             stage_dir(out.parent, "gate") / VERDICT)
    return {"verdict": decision, "checks": {c["name"]: c["status"] for c in checks}}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
