"""The run report: what it shows, that its numbers are the evidence's, and that it survives
absent sections and hostile text."""

from __future__ import annotations

import json
import re

import pytest
from report_runs import make_run

from harness.io import read_json, sha256_file
from harness.report import stage
from harness.rundir import EVIDENCE, VERDICT


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    cfg, run = make_run(root, "good", quality=3)
    out = stage.run(cfg, run / "report")
    folder = root / "reports" / "good"
    return {"run": run, "dir": folder, "out": out, "md": (folder / "report.md").read_text(),
            "html": (folder / "report.html").read_text(),
            "evidence": read_json(folder / EVIDENCE)}


def test_the_gate_table_has_values_thresholds_intervals_and_verdicts(report):
    verdict = read_json(report["run"] / "gate" / VERDICT)
    assert report["evidence"]["verdict"] == verdict
    assert f"**{verdict['decision'].upper()}**" in report["md"]
    judge = next(c for c in verdict["checks"] if c["name"] == "convention_adherence")
    lo, hi = judge["relative_gain_ci"]
    assert (f"| convention_adherence | judge.convention_adherence | min_rel_gain | 0.150 | n/a | "
            f"12 | {judge['base']:.3f} | {judge['candidate']:.3f} | relative gain | "
            f"{judge['relative_gain']:.3f} | [{lo:.3f}, {hi:.3f}] | n/a | {judge['status']} |"
            ) in report["md"]
    for c in verdict["checks"]:
        assert f"**{c['name']}** ({c['status']}): {c['reason']}" in report["md"]


def test_flipped_problems_are_shown_side_by_side_with_their_prompt(report):
    flips = report["evidence"]["flips"]["humaneval"]
    assert [(f["item_id"], f["change"]) for f in flips] == [
        ("HumanEval/0", "broken"), ("HumanEval/6", "fixed"), ("HumanEval/7", "fixed"),
        ("HumanEval/8", "fixed")]
    assert flips[0]["prompt"].startswith("from typing import List")
    assert "| humaneval | 0.500 | [0.254, 0.746] | 0.667 | [0.391, 0.862] | 12 | 3 | 1 |" in report["md"]
    html = report["html"]
    block = html[html.index("HumanEval/0: broken"):html.index("HumanEval/6: fixed")]
    assert "base: passed" in block and "candidate: failed (AssertionError: wrong answer)" in block
    assert "solve_base_0()" in block and "solve_candidate_0()" in block
    assert "has_close_elements" in block  # the prompt, collapsed


def test_model_output_cannot_inject_markup(report):
    assert "<b>base</b>" not in report["html"] and "&lt;b&gt;base&lt;/b&gt;" in report["html"]
    assert "<b>base</b>" not in report["md"]


def test_judge_fim_training_and_data_sections(report):
    md, ev = report["md"], report["evidence"]
    assert "| convention_adherence | 12 | 3.000 | 4.000 |" in md
    wins = ev["judge"]["pairwise"]["correctness"]
    assert f"| correctness | 12 | {wins['wins']} | {wins['ties']} | {wins['losses']} |" in md
    assert ev["judge"]["criteria"]["correctness"]["candidate"]["distribution"] == {"3": 4, "4": 4, "5": 4}
    assert "| base | 0.250 | [0.089, 0.532] | 0.333 | 0.510 | 12 |" in md
    assert ev["loss_curve"][0] == {"step": 1, "loss": 2.5} and ev["eval_loss_curve"] == [
        {"step": 10, "loss": 0.9}]
    assert "| commit | 30 | 25 | bot: 2, merge: 3 |" in md
    assert "secrets redacted: AWS Access Key: 1" in md
    for name in ("gate", "pass_at_1", "judge_scores", "judge_pairwise", "loss", "dropped", "lengths"):
        png = report["dir"] / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ev["plots"][name]["sha256"] == sha256_file(png)
        assert f"](plots/{name}.png)" in md


def test_evidence_hashes_every_input_it_read(report):
    inputs = report["evidence"]["inputs"]
    for rel in ("gate/verdict.json", "eval/metrics.json", "eval/samples/humaneval.base.jsonl",
                "eval/samples/judge_scores.candidate.jsonl", "train/manifest.json",
                "train/train_log.jsonl", "mine/mine_stats.json", "mine/records.jsonl",
                "format/dataset_card.json", "thresholds.json"):
        assert inputs[rel] == sha256_file(report["run"] / rel), rel
    assert report["evidence"]["hashes"]["records_sha256"] == inputs["mine/records.jsonl"]


def _numbers(value) -> set[str]:
    """Every number in the evidence, printed the ways the report prints numbers."""
    if isinstance(value, dict):
        return set().union(*map(_numbers, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_numbers, value)) if value else set()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return set()
    return {str(value), f"{value:.3f}", f"{value:.4f}"}


def test_every_number_in_the_report_tables_is_in_the_evidence(report):
    known = _numbers(report["evidence"])
    cells = [c.strip() for line in report["md"].splitlines() if line.startswith("| ")
             for c in line.strip("|").split("|")]
    numbers = [n for c in cells for n in re.findall(r"-?\d+(?:\.\d+)?", c)
               if not re.search(r"[0-9a-f]{12}", c) and "@" not in c and "/" not in c]
    assert len(numbers) > 100
    assert [n for n in numbers if n not in known] == []


def test_the_html_is_one_self_contained_file(report):
    html = report["html"]
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html and "<link" not in html and "http" not in html


def test_absent_sections_say_not_run(tmp_path):
    cfg, run = make_run(tmp_path, "bare", judge=False, fim=False, train_log=False,
                        overrides=["eval.fim.enabled=false", "eval.judge.enabled=false"])
    stage.run(cfg, run / "report")
    md = (tmp_path / "reports" / "bare" / "report.md").read_text()
    assert "## FIM on held-out holes\n\nNot run" in md and "## LLM judge\n\nNot run" in md
    assert "**convention_adherence** (missing)" in md
    evidence = json.loads((tmp_path / "reports" / "bare" / EVIDENCE).read_text())
    assert evidence["judge"] is None and evidence["fim"] is None and evidence["loss_curve"] == []
    assert "loss" not in evidence["plots"] and "eval/samples/judge_scores.base.jsonl" not in evidence["inputs"]


def test_a_crash_while_writing_leaves_the_previous_report(tmp_path, monkeypatch):
    cfg, run = make_run(tmp_path, "r", quality=1)
    stage.run(cfg, run / "report")
    folder = tmp_path / "reports" / "r"
    before = (folder / "report.md").read_text()

    def broken(_doc):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stage, "to_html", broken)
    with pytest.raises(RuntimeError):
        stage.run(cfg, run / "report")
    assert (folder / "report.md").read_text() == before and (folder / "report.html").exists()


def test_the_power_of_each_pass_fail_check_is_stated(report):
    verdict = read_json(report["run"] / "gate" / VERDICT)
    pooled = next(c for c in verdict["checks"] if c["name"] == "forgetting")
    p = pooled["power"]
    assert pooled["metric"] == "humaneval.pass@1 + mbpp.pass@1" and p["n"] == pooled["n"]
    assert (f"| forgetting | {p['n']} | {p['flips']} | {p['half_width']:.3f} | {p['mde']:.3f} | "
            f"0.050 | {'yes' if p['decidable'] else 'no'} | not measured |") in report["md"]
