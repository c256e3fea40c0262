"""Sweeps: the metric a run is ranked by, the objective an Optuna sweep optimises, and the
summary table (best run by the chosen metric) a Hydra callback writes when a multirun ends.

A metric is `<stage>.<path>` into that stage's main output file in a run dir, e.g.
`train.eval_loss` (manifest.json), `eval.fim.candidate.edit_similarity` (metrics.json),
`gate.decision` (verdict.json). It is configured once, in `hydra.callbacks.sweep_summary`
(conf/hydra/callbacks/sweep_summary.yaml), and read from there by both the summary and the
objective, so the table and the optimiser always rank by the same number.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

STAGE_FILES = {"mine": "mine_stats.json", "format": "dataset_card.json", "train": "manifest.json",
               "eval": "metrics.json", "gate": "verdict.json"}
DIRECTIONS = ("minimize", "maximize")
Value = float | int | str | bool | None


def metric_value(run_dir: str | Path, metric: str) -> Value:
    """The value of `metric` in a run dir, or None when that stage has not written it."""
    stage, _, path = metric.partition(".")
    file = Path(run_dir) / stage / STAGE_FILES.get(stage, "stage.json")
    if not path or not file.exists():
        return None
    node: Any = read_json(file)
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, float | int | str | bool) else None


def _settings() -> DictConfig:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().callbacks.sweep_summary


def objective(cfg: DictConfig, metric: str | None = None) -> float:
    """The number a sweep optimises for the run in `cfg.run_dir` (what a Hydra task function
    returns to the Optuna sweeper). `metric` defaults to hydra.callbacks.sweep_summary.metric."""
    metric = metric or _settings().metric
    value = metric_value(cfg.run_dir, metric)
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise HarnessError(
            f"sweep metric {metric!r} is {value!r} in {cfg.run_dir}: not a number. Fix: pick a "
            "numeric output of a stage this command runs (hydra.callbacks.sweep_summary.metric=…, "
            "e.g. train.eval_loss for `harness train`, eval.fim.candidate.edit_similarity for "
            "`harness run`)."
        )
    return float(value)


def task_result(cfg: DictConfig) -> float | None:
    """What the `harness` Hydra task function returns: in a multirun, the objective (the Optuna
    sweeper needs a number; a missing one fails only that trial); otherwise None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    try:
        return objective(cfg)
    except HarnessError as e:
        log.warning("%s", e)
        return None


def _rank_key(direction: str):
    sign = 1 if direction == "minimize" else -1
    return lambda row: sign * row["value"]


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(v: Value) -> str:
        return "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summarize(sweep_dir: str | Path, metric: str, direction: str,
              columns: list[str] = ()) -> dict:
    """Rank every job of a multirun in `sweep_dir` by `metric`; write sweep_summary.{json,md}."""
    if direction not in DIRECTIONS:
        raise HarnessError(f"sweep direction {direction!r}: expected one of {DIRECTIONS}.")
    sweep_dir = Path(sweep_dir)
    jobs = sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")),
                  key=lambda p: (len(p.name), p.name))
    overrides = {job.name: yaml.safe_load((job / ".hydra/overrides.yaml").read_text()) or []
                 for job in jobs}
    varying = {o for ov in overrides.values() for o in ov
               if any(o not in other for other in overrides.values())}
    rows = []
    for job in jobs:
        value = metric_value(job, metric)
        row = {"job": job.name, "overrides": " ".join(o for o in overrides[job.name] if o in varying),
               "value": value if isinstance(value, float | int) and not isinstance(value, bool) else None,
               metric: value}
        row.update({c: metric_value(job, c) for c in columns if c != metric})
        rows.append(row)
    ranked = sorted((r for r in rows if r["value"] is not None), key=_rank_key(direction))
    best = ranked[0] if ranked else None
    summary = {"sweep_dir": str(sweep_dir.resolve()), "metric": metric, "direction": direction,
               "best": best, "runs": rows}
    cols = ["job", "overrides", metric, *(c for c in columns if c != metric)]
    best_line = (f"Best run by `{metric}` ({direction}): job {best['job']} "
                 f"(`{best['overrides']}`) = {best['value']:.6g}, in "
                 f"{(sweep_dir / best['job']).resolve()}\n" if best
                 else f"No run has a numeric `{metric}`.\n")
    atomic_write_json(sweep_dir / "sweep_summary.json", summary)
    atomic_write_text(sweep_dir / "sweep_summary.md",
                      f"# Sweep summary\n\n{_table(rows, cols)}\n{best_line}")
    log.info("sweep summary (%d runs) → %s\n%s%s", len(rows), (sweep_dir / "sweep_summary.md").resolve(),
             _table(rows, cols), best_line)
    return summary


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary into the sweep dir when a multirun ends."""

    def __init__(self, metric: str, direction: str, columns: list[str] | None = None) -> None:
        self.metric, self.direction = metric, direction
        self.columns = list(columns or [])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarize(config.hydra.sweep.dir, self.metric, self.direction, self.columns)
