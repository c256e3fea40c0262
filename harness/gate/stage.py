"""The gate stage: frozen thresholds + eval samples → `verdict.json` (deploy / no-deploy).

Every check pairs base and candidate per item (the same problem, hole or change request),
reports both values, the difference with a paired bootstrap CI (and McNemar's exact test for
pass/fail metrics), and a status: pass, warn, fail, or missing when the eval produced no data
for it. Deploy only when every check passes or warns and the thresholds are the frozen ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.gate.stats import mcnemar_exact, paired_bootstrap_ci
from harness.gate.thresholds import current, thresholds_path
from harness.io import atomic_write_json, read_json, read_jsonl
from harness.stages import require_output

log = logging.getLogger(__name__)
RULES = ("max_drop", "min_gain", "min_rel_gain")


def paired_values(samples: Path, metric: str) -> tuple[list[float], list[float]]:
    """Per-item values of `metric` for base and candidate, on the items both have."""
    task, _, field = metric.partition(".")
    if task == "judge":
        files, key = "judge_scores", None
    else:
        files, key = task, {"pass@1": "passed"}.get(field, field)
    values: dict[str, dict[str, float]] = {}
    for label in ("base", "candidate"):
        path = samples / f"{files}.{label}.jsonl"
        if not path.exists():
            return [], []
        for r in read_jsonl(path):
            if key is None:  # judge rows: one per (item, criterion)
                if r["criterion"] != field:
                    continue
                v = r["weighted_score"] if r.get("weighted_score") is not None else r["score"]
            else:
                v = r.get(key)
            if v is not None:
                values.setdefault(r["item_id"], {})[label] = float(v)
    items = sorted(i for i, v in values.items() if len(v) == 2)
    return [values[i]["base"] for i in items], [values[i]["candidate"] for i in items]


def evaluate_check(name: str, check: dict, base: list[float], cand: list[float], boot: dict) -> dict:
    if check["rule"] not in RULES:
        raise HarnessError(f"gate.checks.{name}.rule={check['rule']!r}: expected one of {RULES}.")
    row = {"name": name, **check, "n": len(base)}
    if not base:
        return {**row, "status": "missing", "reason": "no paired samples for this metric"}
    b, c = sum(base) / len(base), sum(cand) / len(cand)
    delta = c - b
    lo, hi = paired_bootstrap_ci(base, cand, boot["samples"], boot["confidence"], boot["seed"])
    row.update(base=b, candidate=c, delta=delta, ci=[lo, hi], confidence=boot["confidence"])
    if set(base) | set(cand) <= {0.0, 1.0}:
        row["mcnemar"] = mcnemar_exact([x == 1 for x in base], [x == 1 for x in cand])
    if check["rule"] == "max_drop":
        status = "fail" if delta < -check["fail"] else "warn" if delta < -check.get("warn", check["fail"]) else "pass"
    elif check["rule"] == "min_gain":
        status = "pass" if delta >= check["fail"] else "fail"
    else:
        rel = delta / b if b else (float("inf") if delta > 0 else 0.0)
        row["relative_gain"] = rel
        status = "pass" if rel >= check["fail"] else "fail"
    return {**row, "status": status}


def run(cfg: DictConfig, out: Path) -> dict:
    samples = require_output(cfg, "eval") / "samples"
    path = thresholds_path(cfg)
    if not path.exists():
        raise HarnessError(f"no frozen thresholds at {path}: they are written when eval starts. "
                           "Fix: run `harness eval` for this run first.")
    frozen = read_json(path)
    changed = current(cfg)["sha256"] != frozen["sha256"]
    if changed:
        log.warning("conf/gate changed since eval started; judging with the frozen thresholds")
    gate = frozen["gate"]
    checks = [evaluate_check(name, dict(check), *paired_values(samples, check["metric"]),
                             gate["bootstrap"])
              for name, check in gate["checks"].items()]
    ok = all(c["status"] in ("pass", "warn") for c in checks) and not changed
    verdict = {
        "decision": "deploy" if ok else "no-deploy",
        "checks": checks,
        "thresholds_sha256": frozen["sha256"],
        "thresholds_frozen_at": frozen["frozen_at"],
        "thresholds_changed_after_eval": changed,
    }
    atomic_write_json(out / "verdict.json", verdict)
    for c in checks:
        log.info("gate %-22s %-8s base=%s candidate=%s", c["name"], c["status"],
                 _fmt(c.get("base")), _fmt(c.get("candidate")))
    log.info("decision: %s", verdict["decision"])
    return {"verdict": verdict["decision"], "checks": {c["name"]: c["status"] for c in checks}}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
