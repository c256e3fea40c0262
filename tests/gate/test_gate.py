"""The gate on eval samples written the way the eval stage writes them."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from harness.gate.stats import mcnemar_exact, paired_bootstrap_ci
from harness.gate.thresholds import freeze_thresholds
from harness.io import atomic_write_json, write_jsonl
from harness.stages import run_stage


def write_eval(run_dir, passed: dict[str, tuple[list[int], list[int]]], fim=([0] * 10, [1] * 10),
               judge=([2.0] * 4, [3.0] * 4)):
    samples = run_dir / "eval" / "samples"
    for task, (base, cand) in passed.items():
        for label, vals in (("base", base), ("candidate", cand)):
            write_jsonl(samples / f"{task}.{label}.jsonl",
                        [{"item_id": f"{task}/{i}", "passed": bool(v)} for i, v in enumerate(vals)])
    for label, vals in zip(("base", "candidate"), fim, strict=True):
        write_jsonl(samples / f"fim.{label}.jsonl",
                    [{"item_id": f"h{i}", "exact_match": float(v)} for i, v in enumerate(vals)])
    for label, vals in zip(("base", "candidate"), judge, strict=True):
        write_jsonl(samples / f"judge_scores.{label}.jsonl",
                    [{"item_id": f"c{i}", "criterion": "convention_adherence", "score": v,
                      "weighted_score": None} for i, v in enumerate(vals)])
    atomic_write_json(run_dir / "eval" / "stage.json", {"fingerprint": "eval-fp", "summary": {}})


@pytest.fixture
def cfg(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    freeze_thresholds(cfg)
    return cfg


def test_no_regression_and_real_gains_deploy(cfg, tmp_path):
    write_eval(tmp_path / "run", {"humaneval": ([1, 0] * 50, [1, 0] * 50), "mbpp": ([1] * 100, [1] * 99 + [0])})
    summary = run_stage(cfg, "gate")
    assert summary == {"verdict": "deploy", "checks": {
        "humaneval": "pass", "mbpp": "pass", "fim": "pass", "convention_adherence": "pass"}}


def test_a_forgetting_drop_beyond_the_threshold_fails_the_gate(cfg, tmp_path):
    base = [1] * 60 + [0] * 40
    cand = [1] * 50 + [0] * 50  # -10 points
    write_eval(tmp_path / "run", {"humaneval": (base, cand), "mbpp": ([1] * 10, [1] * 10)})
    from harness.io import read_json

    assert run_stage(cfg, "gate")["verdict"] == "no-deploy"
    check = next(c for c in read_json(tmp_path / "run" / "gate" / "verdict.json")["checks"]
                 if c["name"] == "humaneval")
    assert check["status"] == "fail" and check["delta"] == pytest.approx(-0.10)
    assert check["ci"][0] < -0.10 < check["ci"][1] or check["ci"][1] <= 0
    assert check["mcnemar"] == {"base_only": 10, "candidate_only": 0, "p_value": pytest.approx(0.001953125)}


def test_a_small_drop_warns_but_deploys(cfg, tmp_path):
    write_eval(tmp_path / "run", {"humaneval": ([1] * 100, [1] * 97 + [0] * 3), "mbpp": ([1] * 10, [1] * 10)})
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["humaneval"] == "warn" and summary["verdict"] == "deploy"


def test_missing_metrics_and_changed_thresholds_block_deploy(cfg, tmp_path):
    write_eval(tmp_path / "run", {"humaneval": ([1] * 10, [1] * 10)})
    assert run_stage(cfg, "gate")["checks"]["mbpp"] == "missing"
    looser = make_cfg(tmp_path / "run", overrides=["gate.checks.mbpp.fail=0.5"])
    write_eval(tmp_path / "run", {"humaneval": ([1] * 10, [1] * 10), "mbpp": ([1] * 10, [1] * 10)})
    from harness.io import read_json

    assert run_stage(looser, "gate")["verdict"] == "no-deploy"
    verdict = read_json(tmp_path / "run" / "gate" / "verdict.json")
    assert verdict["thresholds_changed_after_eval"] is True
    assert next(c for c in verdict["checks"] if c["name"] == "mbpp")["fail"] == 0.05  # the frozen one


def test_paired_statistics():
    lo, hi = paired_bootstrap_ci([0.0] * 50, [1.0] * 50)
    assert lo == hi == 1.0
    lo, hi = paired_bootstrap_ci([0, 1] * 50, [1, 0] * 50)
    assert lo < 0 < hi
    assert mcnemar_exact([True, True, False], [True, False, True]) == {
        "base_only": 1, "candidate_only": 1, "p_value": 1.0}
