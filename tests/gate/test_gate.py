"""The gate stage on eval samples written the way the eval stage writes them."""

from __future__ import annotations

import json

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.gate.thresholds import freeze_thresholds
from harness.io import atomic_write_json, read_json, write_jsonl
from harness.rundir import JUDGE_SCORES, METRICS, MODELS, THRESHOLDS, VERDICT, samples, write_stage
from harness.stages import run_stage

SAME = ([1, 0] * 50, [1, 0] * 50)
# what eval measures of a judge that ranks every known answer right, without position bias
RELIABLE = {"pairs": 40, "accuracy": 1.0, "pairwise_accuracy": 1.0, "position_consistency": 1.0,
            "first_position_rate": 0.5, "self_tie_rate": 1.0}
# ... and of one that always answers "A"
POSITION_BIASED = {**RELIABLE, "pairwise_accuracy": 0.0, "position_consistency": 0.0,
                   "first_position_rate": 1.0, "self_tie_rate": 0.0}


def write_eval(run_dir, humaneval=SAME, mbpp=SAME, fim=([0] * 100, [1] * 10 + [0] * 90),
               judge=([3.0] * 20, [4.0] * 20), reliability=RELIABLE, length_rho=0.1):
    """Per-sample files for each task, and metrics.json with the judge's measured reliability;
    `None` leaves a task (or the reliability) out."""
    eval_dir = run_dir / "eval"
    for task, values, key in (("humaneval", humaneval, "passed"), ("mbpp", mbpp, "passed"),
                              ("fim", fim, "exact_match")):
        for label, vals in zip(MODELS, values, strict=True) if values else ():
            write_jsonl(eval_dir / samples(task, label),
                        [{"item_id": f"{task}/{i}", key: v} for i, v in enumerate(vals)])
    for label, vals in zip(MODELS, judge, strict=True):
        write_jsonl(eval_dir / samples(JUDGE_SCORES, label),
                    [{"item_id": f"c{i}", "criterion": c, "score": v, "weighted_score": None}
                     for i, v in enumerate(vals) for c in ("correctness", "convention_adherence")])
    criteria = ("correctness", "convention_adherence")
    atomic_write_json(run_dir / "eval" / METRICS, {"judge": {
        **({"reliability": {"criteria": dict.fromkeys(criteria, reliability)}} if reliability else {}),
        "length_bias": {c: {"spearman": length_rho, "n": 40} for c in criteria}}})
    write_stage(run_dir / "eval", "eval", "eval-fp", {})


@pytest.fixture
def cfg(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    freeze_thresholds(cfg)
    return cfg


def verdict_of(tmp_path) -> dict:
    return read_json(tmp_path / "run" / "gate" / VERDICT)


def test_no_regression_and_real_gains_deploy(cfg, tmp_path):
    write_eval(tmp_path / "run")
    assert run_stage(cfg, "gate") == {"verdict": "deploy", "checks": {
        "forgetting": "pass", "forgetting_relative": "pass", "humaneval": "pass", "mbpp": "pass",
        "fim": "pass", "convention_adherence": "pass"}}
    verdict = verdict_of(tmp_path)
    assert verdict["exit_code"] == 0 and verdict["reasons"] == []
    judge = next(c for c in verdict["checks"] if c["name"] == "convention_adherence")
    assert judge["n"] == 20 and judge["relative_gain"] == pytest.approx(1 / 3)
    assert judge["unpaired"] == {"base_only": 0, "candidate_only": 0}
    assert verdict["decision_rule"] == {"min_items": 10, "on_inconclusive": "hold"}


def test_a_forgetting_drop_beyond_the_threshold_fails_the_gate(cfg, tmp_path):
    write_eval(tmp_path / "run", humaneval=([1] * 70 + [0] * 30, [1] * 55 + [0] * 45))
    assert run_stage(cfg, "gate")["verdict"] == "no-deploy"
    verdict = verdict_of(tmp_path)
    check = next(c for c in verdict["checks"] if c["name"] == "humaneval")
    assert check["status"] == "fail" and check["delta"] == pytest.approx(-0.15)
    assert check["ci"][1] < -0.05 and check["margin"] == -0.05
    assert check["mcnemar"]["base_only"] == 15 and check["mcnemar"]["candidate_only"] == 0
    # pooled with MBPP's 100 unchanged items, the drop is within what 200 items can resolve
    assert verdict["exit_code"] == 3
    assert verdict["reasons"] == ["fail: humaneval", "inconclusive: forgetting"]


def test_a_small_drop_warns_but_deploys(cfg, tmp_path):
    write_eval(tmp_path / "run", mbpp=([1] * 500, [1] * 485 + [0] * 15))
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["mbpp"] == "warn" and summary["verdict"] == "deploy"


def test_too_little_evidence_holds_the_deploy(cfg, tmp_path):
    # 8 pooled items, under decision.min_items; the per-benchmark checks do not hold on their own
    write_eval(tmp_path / "run", humaneval=([1] * 4, [1] * 3 + [0]), mbpp=([1] * 4, [1] * 4))
    assert run_stage(cfg, "gate")["verdict"] == "inconclusive"
    verdict = verdict_of(tmp_path)
    assert verdict["exit_code"] == 4 and verdict["reasons"] == ["inconclusive: forgetting"]
    assert {c["name"]: c["status"] for c in verdict["checks"]}["humaneval"] == "inconclusive"


def test_missing_metrics_and_unpaired_items_are_reported(cfg, tmp_path):
    write_eval(tmp_path / "run", mbpp=None, judge=([3.0] * 20, [4.0] * 18))
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["mbpp"] == "missing" and summary["verdict"] == "no-deploy"
    judge = next(c for c in verdict_of(tmp_path)["checks"] if c["name"] == "convention_adherence")
    assert judge["n"] == 18 and judge["unpaired"] == {"base_only": 2, "candidate_only": 0}


def test_thresholds_changed_after_eval_are_flagged_and_block_deploy(cfg, tmp_path):
    write_eval(tmp_path / "run")
    looser = make_cfg(tmp_path / "run", overrides=["gate.checks.mbpp.fail=0.5"])
    assert run_stage(looser, "gate")["verdict"] == "no-deploy"
    verdict = verdict_of(tmp_path)
    assert verdict["thresholds_changed_after_eval"] is True
    assert verdict["threshold_flags"] == [
        "gate.checks.mbpp.fail changed after eval: frozen 0.05, now 0.5"]
    assert next(c for c in verdict["checks"] if c["name"] == "mbpp")["fail"] == 0.05  # frozen


def test_a_hand_edited_frozen_file_is_detected(cfg, tmp_path):
    write_eval(tmp_path / "run")
    path = tmp_path / "run" / THRESHOLDS
    frozen = json.loads(path.read_text())
    frozen["gate"]["checks"]["humaneval"]["fail"] = 0.5
    path.write_text(json.dumps(frozen))
    assert run_stage(cfg, "gate")["verdict"] == "no-deploy"
    flags = verdict_of(tmp_path)["threshold_flags"]
    assert any("edited after it was frozen" in f for f in flags)


def test_an_invalid_gate_is_refused_when_eval_freezes_it(tmp_path):
    bad = make_cfg(tmp_path / "run", overrides=["gate.checks.fim.rule=at_least"])
    with pytest.raises(HarnessError, match=r"gate\.checks\.fim\.rule"):
        freeze_thresholds(bad)
    assert not (tmp_path / "run" / THRESHOLDS).exists()


def test_an_unreliable_judge_makes_its_check_inconclusive_with_the_figures(cfg, tmp_path):
    write_eval(tmp_path / "run", reliability=POSITION_BIASED, length_rho=0.8)
    summary = run_stage(cfg, "gate")
    assert summary == {"verdict": "inconclusive", "checks": {
        "forgetting": "pass", "forgetting_relative": "pass", "humaneval": "pass", "mbpp": "pass",
        "fim": "pass", "convention_adherence": "inconclusive"}}
    judge = next(c for c in verdict_of(tmp_path)["checks"] if c["name"] == "convention_adherence")
    assert judge["status_if_reliable"] == "pass"  # the scores alone would have passed it
    assert judge["reason"].startswith("judge unreliable: pairwise accuracy 0% < 50%; position "
                                      "consistency 0% < 75%; self tie rate 0% < 50%; "
                                      "first-position rate 100% outside 30%-70%")
    assert judge["judge_reliability"]["figures"]["first_position_rate"] == 1.0
    assert judge["judge_reliability"]["warnings"] == [
        "length bias: score vs response length Spearman rho 0.80 (|rho| > 0.5)"]
    assert verdict_of(tmp_path)["judge_reliability"]["min_accuracy"] == 0.8
    # the non-judge checks are untouched
    assert all("judge_reliability" not in c for c in verdict_of(tmp_path)["checks"]
               if c["name"] != "convention_adherence")


def test_an_unreliable_judge_cannot_fail_the_gate_either(cfg, tmp_path):
    write_eval(tmp_path / "run", judge=([4.0] * 20, [2.0] * 20), reliability=POSITION_BIASED)
    assert run_stage(cfg, "gate")["verdict"] == "inconclusive"
    judge = next(c for c in verdict_of(tmp_path)["checks"] if c["name"] == "convention_adherence")
    assert judge["status"] == "inconclusive" and judge["status_if_reliable"] == "fail"


def test_a_judge_whose_reliability_was_not_measured_does_not_count(cfg, tmp_path):
    write_eval(tmp_path / "run", reliability=None)
    assert run_stage(cfg, "gate")["checks"]["convention_adherence"] == "inconclusive"
    judge = next(c for c in verdict_of(tmp_path)["checks"] if c["name"] == "convention_adherence")
    assert "reliability was not measured" in judge["reason"]


def test_too_few_known_answers_do_not_vouch_for_the_judge(cfg, tmp_path):
    write_eval(tmp_path / "run", reliability={**RELIABLE, "pairs": 3})
    assert run_stage(cfg, "gate")["checks"]["convention_adherence"] == "inconclusive"
    judge = next(c for c in verdict_of(tmp_path)["checks"] if c["name"] == "convention_adherence")
    assert "only 3 known-answer pairs" in judge["reason"]
