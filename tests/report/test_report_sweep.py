"""`harness report --sweep`: the runs of a multirun ranked by their gate verdicts."""

from __future__ import annotations

import pytest
import yaml
from report_runs import compose, make_run

from harness.errors import HarnessError
from harness.io import read_json
from harness.report import stage
from harness.report.sweep import sweep_report
from harness.rundir import EVIDENCE, REPORT_MD, VERDICT
from harness.sweep import summarize

JOBS = {"0": ("1e-4", 1), "1": ("3e-4", 5), "2": ("1e-3", -2)}  # job: (train.lr, quality)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep_dir = root / "runs" / "tune"
    for job, (lr, quality) in JOBS.items():
        cfg, run = make_run(sweep_dir, job, quality=quality,
                            overrides=[f"report_dir={root / 'reports' / 'tune' / job}"])
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"train.lr={lr}", "train.lora.r=16", "run_name=tune"]))
        if job != "2":
            stage.run(cfg, run / "report")
    cfg = compose(root / "runs" / "x", [f"report.sweep={sweep_dir}",
                                        f"report_dir={root / 'reports' / 'x'}"])
    return root, sweep_report(cfg.report, cfg.report_dir)


def test_runs_are_ranked_by_the_gate_decision_then_its_margins(sweep):
    root, out = sweep
    folder = root / "reports" / "tune" / "sweep"
    evidence = read_json(folder / EVIDENCE)
    ranking = evidence["ranking"]
    assert [(r["job"], r["decision"]) for r in ranking] == [
        ("1", "deploy"), ("0", "inconclusive"), ("2", "no-deploy")]
    assert out["best"] == "1" and evidence["params"] == ["train.lr"]
    verdict = read_json(root / "runs" / "tune" / "1" / "gate" / VERDICT)
    humaneval = next(c for c in verdict["checks"] if c["name"] == "humaneval")
    assert ranking[0]["checks"]["humaneval"]["slack"] == humaneval["ci"][0] - humaneval["margin"]
    assert ranking[0]["min_slack"] == min(c["slack"] for c in ranking[0]["checks"].values())
    md = (folder / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1 | 1 |"))
    assert "| 3e-4 | deploy | 6 |" in row and "../1/report.html" in row
    last = next(line for line in md.splitlines() if line.startswith("| 3 | 2 |"))
    assert "| 1e-3 | no-deploy |" in last and last.endswith("| n/a |")  # its report never ran


def test_each_gate_check_is_plotted_against_the_swept_hyperparameter(sweep):
    root, _ = sweep
    folder = root / "reports" / "tune" / "sweep"
    assert (folder / "plots" / "vs_train_lr.png").read_bytes()[:4] == b"\x89PNG"
    html = (folder / "report.html").read_text()
    assert "Gate checks vs <code>train.lr</code>" in html and "data:image/png;base64," in html


def test_a_directory_without_jobs_is_refused(tmp_path):
    cfg = compose(tmp_path / "x", [f"report.sweep={tmp_path}"])
    with pytest.raises(HarnessError, match="holds no multirun jobs"):
        sweep_report(cfg.report, cfg.report_dir)


def test_the_report_ranks_like_the_multiruns_own_summary_and_shows_its_metric(sweep):
    root, _ = sweep
    sweep_dir = root / "runs" / "tune"
    summary = summarize(sweep_dir, "train.eval_loss", "minimize")  # what ends a multirun
    cfg = compose(root / "runs" / "x", [f"report.sweep={sweep_dir}",
                                        f"report_dir={root / 'reports' / 'x'}"])
    sweep_report(cfg.report, cfg.report_dir)
    folder = root / "reports" / "tune" / "sweep"
    evidence = read_json(folder / EVIDENCE)
    assert evidence["metric"] == "train.eval_loss" and evidence["direction"] == "minimize"
    by_summary = [r["job"] for r in sorted(summary["runs"], key=lambda r: r["rank"])]
    assert [r["job"] for r in evidence["ranking"]] == by_summary == ["1", "0", "2"]
    header = next(line for line in (folder / REPORT_MD).read_text().splitlines()
                  if line.startswith("| rank |"))
    assert "| min slack | train.eval_loss |" in header
