"""The declared decision rule: paired statistics → pass / warn / fail / inconclusive → decision."""

from __future__ import annotations

import copy

import pytest

from harness.errors import HarnessError
from harness.gate.rules import EXIT_CODES, decide, evaluate_check, judge_reliability, validate

GATE = {
    "checks": {"humaneval": {"metric": "humaneval.pass@1", "rule": "max_drop", "fail": 0.05, "warn": 0.02},
               "fim": {"metric": "fim.exact_match", "rule": "min_gain", "fail": 0.01},
               "judge": {"metric": "judge.convention_adherence", "rule": "min_rel_gain", "fail": 0.15},
               "kept": {"metric": "humaneval.pass@1", "rule": "max_rel_drop", "fail": 0.5}},
    "bootstrap": {"samples": 2000, "confidence": 0.95, "seed": 0},
    "decision": {"min_items": 10, "on_inconclusive": "hold"},
}


def check(name: str, base: list[float], cand: list[float]) -> dict:
    return evaluate_check(name, GATE["checks"][name], base, cand, GATE)


def test_forgetting_checks_are_non_inferiority_tests():
    # 15 of 100 problems lost: the whole CI lies below -5 points
    lost = check("humaneval", [1] * 70 + [0] * 30, [1] * 55 + [0] * 45)
    assert lost["status"] == "fail" and lost["ci"][1] < -0.05 and lost["delta"] == pytest.approx(-0.15)
    assert lost["mcnemar"] == {"base_only": 15, "candidate_only": 0, "p_value": pytest.approx(2 ** -14)}
    # identical results on 200 problems: confidently within the margin
    same = check("humaneval", [1, 0] * 100, [1, 0] * 100)
    assert same["status"] == "pass" and same["ci"] == [0.0, 0.0]
    # 3 points lost on 500 problems: within the margin (CI above -5) but beyond the warn band
    small = check("humaneval", [1] * 500, [1] * 485 + [0] * 15)
    assert small["status"] == "warn" and small["ci"][0] >= -0.05
    # 2 of 20 lost: a 10-point point estimate, but the CI reaches above -5 points
    few = check("humaneval", [1] * 20, [1] * 18 + [0] * 2)
    assert few["status"] == "inconclusive" and few["ci"][0] < -0.05 <= few["ci"][1]
    assert "contains -0.05" in few["reason"]


def test_gains_must_clear_the_margin_with_confidence():
    gained = check("fim", [0] * 100, [1] * 10 + [0] * 90)
    assert gained["status"] == "pass" and gained["ci"][0] >= 0.01
    flat = check("fim", [0, 1] * 50, [0, 1] * 50)
    assert flat["status"] == "fail" and "below 0.01" in flat["reason"]


def test_relative_gain_uses_the_ci_of_the_ratio():
    better = check("judge", [3.0] * 20, [4.0] * 20)
    assert better["status"] == "pass" and better["relative_gain"] == pytest.approx(1 / 3)
    assert better["relative_gain_ci"] == [pytest.approx(1 / 3)] * 2
    slightly = check("judge", [3.0] * 20, [3.1] * 20)
    assert slightly["status"] == "fail"
    noisy = check("judge", [3.0] * 20, [1.0, 5.0] * 5 + [4.0] * 10)
    assert noisy["status"] == "inconclusive"
    assert noisy["relative_gain_ci"][0] < 0.15 <= noisy["relative_gain_ci"][1]


def test_a_relative_drop_decides_for_a_weak_base_model_where_5_points_cannot():
    # the offline demo's shape: 10 of 128 base passes. Losing all of them is inconclusive at a
    # 5-point margin (the CI reaches -0.031) but a fail for "keep at least half of them"
    base = [1] * 10 + [0] * 118
    lost = [0] * 128
    assert check("humaneval", base, lost)["status"] == "inconclusive"
    gone = check("kept", base, lost)
    assert gone["status"] == "fail" and gone["relative_gain_ci"] == [-1.0, -1.0]
    assert "lies below -0.5" in gone["reason"]
    # 4 passes gained and 3 lost (the demo's candidate): the ratio's CI stays above -0.5
    kept = check("kept", base, [0] * 3 + [1] * 7 + [1] * 4 + [0] * 114)
    assert kept["status"] == "pass" and kept["relative_gain"] == pytest.approx(0.1)
    # 7 of 10 lost: the CI of the ratio holds -0.5, too few passes to tell
    assert check("kept", base, [1] * 3 + [0] * 125)["status"] == "inconclusive"


def test_too_few_items_or_none_are_not_a_pass():
    assert check("fim", [0] * 5, [1] * 5)["status"] == "inconclusive"
    missing = check("fim", [], [])
    assert missing["status"] == "missing" and "no paired items" in missing["reason"]


def test_decision_follows_the_declared_policy_for_inconclusive_checks():
    rows = [{"name": "a", "status": "pass"}, {"name": "b", "status": "warn"}]
    assert decide(rows, GATE, []) == ("deploy", [])
    held = [*rows, {"name": "c", "status": "inconclusive"}]
    assert decide(held, GATE, []) == ("inconclusive", ["inconclusive: c"])
    for policy in ("deploy", "no-deploy"):
        gate = {**GATE, "decision": {**GATE["decision"], "on_inconclusive": policy}}
        assert decide(held, gate, [])[0] == policy
    assert decide([*held, {"name": "d", "status": "missing"}], GATE, [])[0] == "no-deploy"
    assert decide(rows, GATE, ["thresholds changed"]) == ("no-deploy", ["thresholds changed"])
    assert EXIT_CODES == {"deploy": 0, "no-deploy": 3, "inconclusive": 4}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda g: g["checks"]["fim"].update(rule="at_least"), "checks.fim.rule"),
    (lambda g: g["checks"]["humaneval"].update(warn=0.1), "checks.humaneval.warn"),
    (lambda g: g["checks"]["fim"].update(warn=0.005), "only max_drop"),
    (lambda g: g["checks"]["judge"].update(metric="convention"), "checks.judge.metric"),
    (lambda g: g["bootstrap"].update(confidence=1.5), "bootstrap.confidence"),
    (lambda g: g["decision"].update(on_inconclusive="maybe"), "decision.on_inconclusive"),
    (lambda g: g["checks"]["kept"].update(fail=1.5), r"checks.kept.fail"),
])
def test_a_gate_the_rule_cannot_apply_is_refused(edit, message):
    validate(GATE)
    gate = copy.deepcopy(GATE)
    edit(gate)
    with pytest.raises(HarnessError, match=message):
        validate(gate)


THRESHOLDS = {"min_pairs": 8, "min_accuracy": 0.8, "min_pairwise_accuracy": 0.5,
              "min_position_consistency": 0.75, "max_first_position_bias": 0.2,
              "min_self_tie_rate": 0.5, "max_length_correlation": 0.5}


def test_judge_reliability_names_every_shortfall_and_null_turns_a_requirement_off():
    random_judge = {"pairs": 30, "accuracy": 0.4, "pairwise_accuracy": 0.1,
                    "position_consistency": 0.35, "first_position_rate": 0.45,
                    "self_tie_rate": 0.3, "length_correlation": -0.6}
    r = judge_reliability(random_judge, THRESHOLDS)
    assert not r["reliable"]
    assert r["shortfalls"] == ["accuracy 40% < 80%", "pairwise accuracy 10% < 50%",
                               "position consistency 35% < 75%", "self tie rate 30% < 50%"]
    assert r["warnings"] == ["length bias: score vs response length Spearman rho -0.60 (|rho| > 0.5)"]
    lenient = {k: None for k in THRESHOLDS}
    assert judge_reliability(random_judge, lenient)["reliable"]
    # a figure that was not measured (pairwise judging off) falls short of its threshold
    absolute_only = {**random_judge, "accuracy": 0.9, "pairwise_accuracy": None,
                     "position_consistency": None, "first_position_rate": None, "self_tie_rate": None}
    only_accuracy = {**lenient, "min_accuracy": 0.8}
    assert judge_reliability(absolute_only, only_accuracy)["reliable"]
    assert judge_reliability(absolute_only, {**only_accuracy, "min_self_tie_rate": 0.5})[
        "shortfalls"] == ["self tie rate n/a < 50%"]


@pytest.mark.parametrize(("section", "key"), [
    ({"min_acuracy": 0.7}, "judge_reliability"),  # a typo would silently drop a requirement
    ({"min_accuracy": 1.5}, "judge_reliability.min_accuracy"),
    ({"max_first_position_bias": 0.7}, "judge_reliability.max_first_position_bias"),
    ({"min_pairs": 0}, "judge_reliability.min_pairs"),
])
def test_bad_judge_reliability_thresholds_are_refused(section, key):
    with pytest.raises(HarnessError, match=rf"gate\.{key}="):
        validate({**GATE, "judge_reliability": section})
