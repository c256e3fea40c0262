"""A check declared null is off: it is not frozen, not evaluated, and cannot hold the deploy."""

from __future__ import annotations

from conftest import make_cfg
from test_gate import write_eval

from harness.gate.thresholds import freeze_thresholds
from harness.stages import run_stage


def test_a_null_check_is_left_out_of_the_frozen_gate_and_the_verdict(tmp_path):
    cfg = make_cfg(tmp_path / "run", overrides=["gate.checks.convention_adherence=null"])
    frozen = freeze_thresholds(cfg)
    assert set(frozen["gate"]["checks"]) == {"forgetting", "forgetting_relative", "humaneval", "mbpp", "fim"}
    # a judge that would hold the deploy (position-biased) no longer matters
    write_eval(tmp_path / "run", reliability={"pairs": 40, "accuracy": 0.2})
    assert run_stage(cfg, "gate") == {"verdict": "deploy", "checks": {
        "forgetting": "pass", "forgetting_relative": "pass", "humaneval": "pass", "mbpp": "pass",
        "fim": "pass"}}
