"""Sweeps: what each job of a multirun scored, the one ranking of those jobs, the objective an
Optuna sweep optimises, and the summary table a Hydra callback writes when a multirun ends.

The ranking (`rank`) is the one both the end-of-multirun summary and `harness report --sweep`
use: the gate's decision first (deploy, inconclusive, no-deploy, not gated), then the number
of checks that pass, then the weakest check's slack (how far the lower CI bound of its statistic
clears its margin; a check passes at >= 0), then the sweep metric in its direction, then the job
number. Runs the gate has judged are ranked by the gate's own numbers, so "best run" and
"deployable run" are the same question; a sweep that only trains (nothing gated) is ranked by
the metric alone.

A metric is `<stage>.<path>` into that stage's main output file in a run dir, e.g.
`train.eval_loss` (manifest.json), `eval.fim.candidate.edit_similarity` (metrics.json),
`gate.decision` (verdict.json). It is configured once, in `hydra.callbacks.sweep_summary`
(conf/hydra/callbacks/sweep_summary.yaml), and read from there by both the summary and the
objective; the summary writes it into `sweep_summary.json`, where `report --sweep` finds it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_write_json, atomic_write_text, read_json, sha256_file
from harness.rundir import MAIN_FILE, STAGE_JSON, VERDICT, stage_dir

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
ORDER = {"deploy": 0, "inconclusive": 1, "no-deploy": 2, None: 3}  # gate decisions, best first
SUMMARY = "sweep_summary"  # <sweep dir>/sweep_summary.{json,md}
Value = float | int | str | bool | None


def jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of the multirun in `sweep_dir`, in job-number order."""
    return sorted((p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml")),
                  key=lambda p: (len(p.name), p.name))


def overrides(job: Path) -> list[str]:
    """The command-line overrides a job ran with, as Hydra saved them."""
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []


def metric_value(run_dir: str | Path, metric: str) -> Value:
    """The value of `metric` in a run dir, or None when that stage has not written it."""
    stage, _, path = metric.partition(".")
    file = stage_dir(run_dir, stage) / MAIN_FILE.get(stage, STAGE_JSON)
    if not path or not file.exists():
        return None
    node: Any = read_json(file)
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, float | int | str | bool) else None


def numeric(value: Value) -> float | int | None:
    """`value` when it can rank runs (a number, not a bool), else None."""
    return value if isinstance(value, float | int) and not isinstance(value, bool) else None


def _check(c: dict) -> dict:
    rel = c.get("statistic") == "relative_gain"
    ci = c.get("relative_gain_ci" if rel else "ci")
    value = c.get("relative_gain" if rel else "delta")
    slack = ci[0] - c["margin"] if ci and "margin" in c and math.isfinite(ci[0]) else None
    return {"status": c["status"], "value": value, "ci": ci, "margin": c.get("margin"),
            "base": c.get("base"), "candidate": c.get("candidate"), "slack": slack}


def gate_standing(run_dir: Path) -> dict:
    """What the gate said of a run, as the ranking reads it: decision (None: not gated), each
    check's statistic, CI, margin and slack, the number of checks passed, the weakest slack."""
    path = stage_dir(run_dir, "gate") / VERDICT
    verdict = read_json(path) if path.exists() else None
    checks = {c["name"]: _check(c) for c in (verdict or {}).get("checks", [])}
    slacks = [c["slack"] for c in checks.values() if c["slack"] is not None]
    return {"decision": verdict["decision"] if verdict else None, "checks": checks,
            "passed": sum(c["status"] in ("pass", "warn") for c in checks.values()),
            "min_slack": min(slacks) if slacks else None,
            "verdict_sha256": sha256_file(path) if verdict else None}


def rank(rows: list[dict], direction: str = "minimize") -> list[dict]:
    """`rows` (each with `job` and the `gate_standing` keys, and `value`: the sweep metric or
    None) best first, each given its `rank` (1 = best)."""
    if direction not in DIRECTIONS:
        raise HarnessError(f"sweep direction {direction!r}: expected one of {DIRECTIONS}.")
    sign = 1 if direction == "minimize" else -1

    def key(r: dict) -> tuple:
        slack = r.get("min_slack")
        value = r.get("value")
        return (ORDER.get(r.get("decision"), 3), -r.get("passed", 0),
                -(slack if slack is not None else -math.inf),
                (0, sign * value) if value is not None else (1, 0),
                len(r["job"]), r["job"])

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i
    return ranked


def _settings() -> DictConfig:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().callbacks.sweep_summary


def objective(run_dir: str | Path, metric: str | None = None) -> float:
    """The number a sweep optimises for the run in `run_dir` (what a Hydra task function
    returns to the Optuna sweeper). `metric` defaults to hydra.callbacks.sweep_summary.metric.
    An optimiser needs one number, so this is the metric alone; the ranking puts the gate's
    judgement before it once runs are gated."""
    metric = metric or _settings().metric
    value = metric_value(run_dir, metric)
    if numeric(value) is None:
        raise HarnessError(
            f"sweep metric {metric!r} is {value!r} in {run_dir}: not a number. Fix: pick a "
            "numeric output of a stage this command runs (hydra.callbacks.sweep_summary.metric=…, "
            "e.g. train.eval_loss for `harness train`, eval.fim.candidate.edit_similarity for "
            "`harness run`)."
        )
    return float(value)


def task_result(run_dir: str | Path) -> float | None:
    """What the `harness` Hydra task function returns for the run in `run_dir`: in a multirun,
    the objective (the Optuna sweeper needs a number; a missing one fails only that trial);
    otherwise None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    try:
        return objective(run_dir)
    except HarnessError as e:
        log.warning("%s", e)
        return None


def summary_metric(sweep_dir: Path) -> tuple[str | None, str]:
    """The metric and direction the multirun's own summary ranked by (None: no summary)."""
    path = Path(sweep_dir) / f"{SUMMARY}.json"
    if not path.exists():
        return None, "minimize"
    summary = read_json(path)
    return summary.get("metric"), summary.get("direction", "minimize")


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(v: Value) -> str:
        return "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _best_line(best: dict | None, metric: str, direction: str, gated: bool,
               sweep_dir: Path) -> str:
    if best is None:
        return f"No run has a numeric `{metric}`.\n"
    where = (sweep_dir / best["job"]).resolve()
    value = "n/a" if best["value"] is None else f"{best['value']:.6g}"
    if not gated:
        return (f"Best run by `{metric}` ({direction}): job {best['job']} "
                f"(`{best['overrides']}`) = {value}, in {where}\n")
    return (f"Best run by the gate (decision, checks passed, weakest slack), then `{metric}` "
            f"({direction}): job {best['job']} (`{best['overrides']}`): {best['decision']}, "
            f"{metric} = {value}, in {where}\n")


def summarize(sweep_dir: str | Path, metric: str, direction: str,
              columns: list[str] = ()) -> dict:
    """Rank every job of a multirun in `sweep_dir` (`rank`); write sweep_summary.{json,md}."""
    if direction not in DIRECTIONS:
        raise HarnessError(f"sweep direction {direction!r}: expected one of {DIRECTIONS}.")
    sweep_dir = Path(sweep_dir)
    found = jobs(sweep_dir)
    saved = {job.name: overrides(job) for job in found}
    varying = {o for ov in saved.values() for o in ov
               if any(o not in other for other in saved.values())}
    rows = []
    for job in found:
        value = metric_value(job, metric)
        standing = gate_standing(job)
        row = {"job": job.name, "overrides": " ".join(o for o in saved[job.name] if o in varying),
               "value": numeric(value), metric: value,
               **{k: standing[k] for k in ("decision", "passed", "min_slack")}}
        row.update({c: metric_value(job, c) for c in columns if c != metric})
        rows.append(row)
    gated = any(r["decision"] is not None for r in rows)
    ranked = rank([r for r in rows if r["value"] is not None or r["decision"] is not None],
                  direction)
    best = ranked[0] if ranked else None
    summary = {"sweep_dir": str(sweep_dir.resolve()), "metric": metric, "direction": direction,
               "best": best, "runs": rows}
    cols = ["job", "overrides", metric, *(c for c in columns if c != metric)]
    best_line = _best_line(best, metric, direction, gated, sweep_dir)
    atomic_write_json(sweep_dir / f"{SUMMARY}.json", summary)
    atomic_write_text(sweep_dir / f"{SUMMARY}.md",
                      f"# Sweep summary\n\n{_table(rows, cols)}\n{best_line}")
    log.info("sweep summary (%d runs) → %s\n%s%s", len(rows),
             (sweep_dir / f"{SUMMARY}.md").resolve(), _table(rows, cols), best_line)
    return summary


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary into the sweep dir when a multirun ends."""

    def __init__(self, metric: str, direction: str, columns: list[str] | None = None) -> None:
        self.metric, self.direction = metric, direction
        self.columns = list(columns or [])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarize(config.hydra.sweep.dir, self.metric, self.direction, self.columns)
