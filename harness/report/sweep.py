"""`harness report --sweep <multirun dir>`: one table ranking the runs of a sweep, and plots
of each gate check against each swept hyperparameter.

The ranking is harness/sweep.py's `rank`, the one the multirun's own summary uses: the gate's
decision first (deploy, inconclusive, no-deploy, not gated), then the number of checks that
pass, then the weakest check's slack (how far the lower CI bound of its statistic clears its
margin; the gate passes a check when that slack is >= 0), then the metric the multirun's summary
ranked by (from its sweep_summary.json, when it wrote one). Ranking by the gate's own numbers
keeps "best run" and "deployable run" the same question.

Written to `reports/<sweep name>/sweep/` (the jobs' own reports are in
`reports/<sweep name>/<job>/`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.report import plots
from harness.report.document import (
    Document,
    Figure,
    Heading,
    Para,
    Table,
    fmt,
    to_html,
    to_markdown,
)
from harness.report.stage import write_report
from harness.rundir import REPORT_HTML, REPORT_MD
from harness.sweep import (
    gate_standing,
    jobs,
    metric_value,
    numeric,
    overrides,
    rank,
    summary_metric,
)

log = logging.getLogger(__name__)


def _value(text: str) -> float | int | str:
    """An override's value as a number when it is one (YAML reads "3e-4" as a string)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _overrides(job: Path) -> dict:
    return dict(o.lstrip("+~").split("=", 1) for o in overrides(job) if "=" in o)


def job_row(job: Path, swept: dict, report_root: Path, metric: str | None = None) -> dict:
    """What the sweep report shows of one job: the swept values it ran with, its gate standing,
    the sweep metric, its report."""
    report = report_root / job.name / REPORT_HTML
    return {"job": job.name, "run_dir": str(job.resolve()), "overrides": swept,
            **gate_standing(job),
            "value": numeric(metric_value(job, metric)) if metric else None,
            "report": f"../{job.name}/{REPORT_HTML}" if report.exists() else None}


def sweep_report(report_cfg: DictConfig, report_dir: str | Path) -> dict:
    """Rank the jobs of the multirun in `report.sweep` (of the report settings `report_cfg`),
    into `reports/<sweep name>/sweep/` beside `report_dir` (the config's); returns where the
    report went."""
    sweep_dir = Path(str(report_cfg.sweep)).expanduser()
    found = jobs(sweep_dir)
    if not found:
        raise HarnessError(f"{sweep_dir} holds no multirun jobs (<dir>/<n>/.hydra/overrides.yaml)"
                           f". Fix: pass the directory of a `harness run -m …` sweep, e.g. "
                           f"runs/<run_name>.")
    saved = {job.name: _overrides(job) for job in found}
    params = sorted({k for ov in saved.values() for k in ov
                     if len({str(o.get(k)) for o in saved.values()}) > 1})
    out_dir = Path(report_dir).parent / sweep_dir.resolve().name  # reports/<sweep name>
    metric, direction = summary_metric(sweep_dir)
    rows = rank([job_row(job, {k: saved[job.name].get(k) for k in params}, out_dir, metric)
                 for job in found], direction)
    names = sorted({n for r in rows for n in r["checks"]})
    then = f", then `{metric}` ({direction}, the sweep summary's metric)" if metric else ""
    doc = Document(f"Sweep {sweep_dir.resolve().name}: {len(rows)} runs ranked by the gate")
    doc.add(Para(f"Ranked by the gate decision, then checks passed, then the weakest check's "
                 f"slack (lower CI bound minus margin; a check passes at >= 0){then}. Swept: "
                 f"{', '.join(f'`{p}`' for p in params) or 'nothing varies'}. Per check: value "
                 f"[CI] status, the value being candidate − base (or the relative gain)."),
            Table(["rank", "job", *params, "decision", "passed", "min slack",
                   *([metric] if metric else []), *names, "report"],
                  [[r["rank"], r["job"], *(r["overrides"].get(p) for p in params),
                    r["decision"] or "not gated", r["passed"], r["min_slack"],
                    *([r["value"]] if metric else []),
                    *(_cell(r["checks"].get(n)) for n in names), r["report"] or "n/a"]
                   for r in rows]))
    for param in params:
        points = [{"x": _value(str(r["overrides"][param])), "checks": r["checks"]} for r in rows
                  if r["overrides"].get(param) is not None]
        png = plots.sweep(param, points, names)
        if png:
            doc.add(Heading(f"Gate checks vs `{param}`"),
                    Figure(f"vs_{param.replace('.', '_').replace('/', '_')}", png,
                           f"Each check's statistic and CI per value of {param}; dashed: margin"))
    evidence = {"sweep_dir": str(sweep_dir.resolve()), "params": params, "checks": names,
                "metric": metric, "direction": direction if metric else None, "ranking": rows}
    target = out_dir / "sweep"
    write_report(target, doc, evidence, {REPORT_MD: to_markdown(doc), REPORT_HTML: to_html(doc)})
    best = rows[0]
    log.info("sweep report (%d runs) → %s; best: job %s (%s, %s)", len(rows),
             (target / REPORT_MD).resolve(), best["job"], best["decision"], best["overrides"])
    return {"report": str((target / REPORT_MD).resolve()), "best": best["job"]}


def _cell(c: dict | None) -> str:
    if not c:
        return "n/a"
    ci = f" [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]" if c.get("ci") else ""
    return f"{fmt(c['value'])}{ci} {c['status']}"
