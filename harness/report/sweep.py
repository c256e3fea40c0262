"""`harness report --sweep <multirun dir>`: one table ranking the runs of a sweep by the gate,
and plots of each gate check against each swept hyperparameter.

Ranking: the gate's decision first (deploy, inconclusive, no-deploy, not gated), then the
number of checks that pass, then the weakest check's slack: how far the lower CI bound of its
statistic clears its margin (the gate passes a check when that slack is >= 0). Ranking by the
gate's own numbers keeps "best run" and "deployable run" the same question.

Written to `reports/<sweep name>/sweep/` (the jobs' own reports are in
`reports/<sweep name>/<job>/`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import yaml
from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import read_json, sha256_file
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

log = logging.getLogger(__name__)
ORDER = {"deploy": 0, "inconclusive": 1, "no-deploy": 2, None: 3}


def _value(text: str) -> float | int | str:
    """An override's value as a number when it is one (YAML reads "3e-4" as a string)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _overrides(job: Path) -> dict:
    pairs = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(o.lstrip("+~").split("=", 1) for o in pairs if "=" in o)


def _check(c: dict) -> dict:
    rel = c.get("statistic") == "relative_gain"
    ci = c.get("relative_gain_ci" if rel else "ci")
    value = c.get("relative_gain" if rel else "delta")
    slack = ci[0] - c["margin"] if ci and "margin" in c and math.isfinite(ci[0]) else None
    return {"status": c["status"], "value": value, "ci": ci, "margin": c.get("margin"),
            "base": c.get("base"), "candidate": c.get("candidate"), "slack": slack}


def job_row(job: Path, overrides: dict, report_root: Path) -> dict:
    verdict_path = job / "gate" / "verdict.json"
    verdict = read_json(verdict_path) if verdict_path.exists() else None
    checks = {c["name"]: _check(c) for c in (verdict or {}).get("checks", [])}
    slacks = [c["slack"] for c in checks.values() if c["slack"] is not None]
    report = report_root / job.name / "report.html"
    return {"job": job.name, "run_dir": str(job.resolve()), "overrides": overrides,
            "decision": verdict["decision"] if verdict else None, "checks": checks,
            "passed": sum(c["status"] in ("pass", "warn") for c in checks.values()),
            "min_slack": min(slacks) if slacks else None,
            "verdict_sha256": sha256_file(verdict_path) if verdict else None,
            "report": f"../{job.name}/report.html" if report.exists() else None}


def rank(rows: list[dict]) -> list[dict]:
    def key(r: dict) -> tuple:
        slack = r["min_slack"] if r["min_slack"] is not None else -math.inf
        return ORDER.get(r["decision"], 3), -r["passed"], -slack, r["job"]

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i
    return ranked


def sweep_report(cfg: DictConfig) -> dict:
    """Rank the jobs of the multirun in `report.sweep`; returns where the report went."""
    sweep_dir = Path(str(cfg.report.sweep)).expanduser()
    jobs = sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")),
                  key=lambda p: (len(p.name), p.name))
    if not jobs:
        raise HarnessError(f"{sweep_dir} holds no multirun jobs (<dir>/<n>/.hydra/overrides.yaml)"
                           f". Fix: pass the directory of a `harness run -m …` sweep, e.g. "
                           f"runs/<run_name>.")
    overrides = {job.name: _overrides(job) for job in jobs}
    params = sorted({k for ov in overrides.values() for k in ov
                     if len({str(o.get(k)) for o in overrides.values()}) > 1})
    out_dir = Path(cfg.report_dir).parent / sweep_dir.resolve().name  # reports/<sweep name>
    rows = rank([job_row(job, {k: overrides[job.name].get(k) for k in params}, out_dir)
                 for job in jobs])
    names = sorted({n for r in rows for n in r["checks"]})
    doc = Document(f"Sweep {sweep_dir.resolve().name}: {len(rows)} runs ranked by the gate")
    doc.add(Para(f"Ranked by the gate decision, then checks passed, then the weakest check's "
                 f"slack (lower CI bound minus margin; a check passes at >= 0). Swept: "
                 f"{', '.join(f'`{p}`' for p in params) or 'nothing varies'}. Per check: value "
                 f"[CI] status, the value being candidate − base (or the relative gain)."),
            Table(["rank", "job", *params, "decision", "passed", "min slack",
                   *names, "report"],
                  [[r["rank"], r["job"], *(r["overrides"].get(p) for p in params),
                    r["decision"] or "not gated", r["passed"], r["min_slack"],
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
                "ranking": rows}
    target = out_dir / "sweep"
    write_report(target, doc, evidence, {"report.md": to_markdown(doc), "report.html": to_html(doc)})
    best = rows[0]
    log.info("sweep report (%d runs) → %s; best: job %s (%s, %s)", len(rows),
             (target / "report.md").resolve(), best["job"], best["decision"], best["overrides"])
    return {"report": str((target / "report.md").resolve()), "best": best["job"]}


def _cell(c: dict | None) -> str:
    if not c:
        return "n/a"
    ci = f" [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]" if c.get("ci") else ""
    return f"{fmt(c['value'])}{ci} {c['status']}"
