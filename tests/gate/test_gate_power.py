"""The gate's power: what a check can resolve with its items, a pooled forgetting check that can
decide at realistic flip counts, and per-benchmark checks that can fail but not hold."""

from __future__ import annotations

import pytest
from conftest import make_cfg
from omegaconf import OmegaConf
from test_gate import write_eval

from harness.benchmarks import load_humaneval, load_mbpp
from harness.eval.stage import power_plan
from harness.gate.power import half_width, min_detectable_effect
from harness.gate.thresholds import freeze_thresholds
from harness.io import read_json
from harness.rundir import VERDICT
from harness.stages import run_stage

POOLED = ["gate.checks.convention_adherence=null"]  # the default forgetting checks alone


def flips(n: int, each_way: int, passing: int = 40) -> tuple[list[int], list[int]]:
    """Base and candidate outcomes on n items: `each_way` items flip in each direction."""
    base = [1] * passing + [0] * (n - passing)
    cand = list(base)
    for i in range(each_way):
        cand[i] = 0  # lost
        cand[passing + i] = 1  # gained
    return base, cand


def test_the_ci_half_width_at_no_change_is_what_the_items_allow():
    # HumanEval alone with 12% of problems flipping: ±0.053, wider than a 5-point margin
    assert half_width(164, 0.12, 0.95) == pytest.approx(0.0526, abs=1e-3)
    assert half_width(664, 0.12, 0.95) == pytest.approx(0.0261, abs=1e-3)  # + MBPP: decidable
    assert min_detectable_effect(664, 0.12, 0.95) == pytest.approx(0.0376, abs=1e-3)


def test_a_pooled_check_decides_where_each_benchmark_alone_is_inconclusive(tmp_path):
    cfg = make_cfg(tmp_path / "run", overrides=POOLED)
    freeze_thresholds(cfg)
    write_eval(tmp_path / "run", humaneval=flips(164, 10), mbpp=flips(500, 10))
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["humaneval"] == "inconclusive"  # 20 of 164 flipped, net zero
    assert summary["checks"]["forgetting"] == "pass" and summary["verdict"] == "deploy"
    verdict = read_json(tmp_path / "run" / "gate" / VERDICT)
    pooled = next(c for c in verdict["checks"] if c["name"] == "forgetting")
    assert pooled["n"] == 664 and pooled["power"]["flips"] == 40 and pooled["power"]["decidable"]
    alone = next(c for c in verdict["checks"] if c["name"] == "humaneval")
    assert alone["power"]["flips"] == 20 and not alone["power"]["decidable"]
    assert "cannot pass" in alone["power"]["warning"]


def test_real_forgetting_fails_the_pooled_check_and_the_gate(tmp_path):
    cfg = make_cfg(tmp_path / "run", overrides=POOLED)
    freeze_thresholds(cfg)
    base_he, _ = flips(164, 0)
    base_mb, _ = flips(500, 0, passing=150)
    lost_he = [0] * 30 + base_he[30:]  # 30 of 40 HumanEval passes lost
    lost_mb = [0] * 60 + base_mb[60:]
    write_eval(tmp_path / "run", humaneval=(base_he, lost_he), mbpp=(base_mb, lost_mb))
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["forgetting"] == "fail" and summary["verdict"] == "no-deploy"


def test_eval_warns_before_generating_when_a_margin_is_below_what_its_items_resolve(caplog):
    cfg = make_cfg("/tmp/unused", overrides=[*POOLED, "gate.power.flip_rate=0.12"])
    plan = {"humaneval": load_humaneval(), "mbpp": load_mbpp()}  # task -> its items
    with caplog.at_level("WARNING"):
        figures = power_plan(cfg.gate, plan, 0.95)
    assert figures["humaneval"]["n"] == 164 and not figures["humaneval"]["decidable"]
    assert figures["forgetting"]["n"] == 664 and figures["forgetting"]["decidable"]
    assert "gate check humaneval" in caplog.text and "gate check forgetting" not in caplog.text
    assert power_plan(OmegaConf.create({"checks": {}}), plan, 0.95) == {}


def test_a_weak_model_that_loses_every_pass_fails_on_the_relative_check(tmp_path):
    # the offline demo's base: 7 of 64 HumanEval and 3 of 64 MBPP problems pass; a harmful
    # candidate passes none. At 5 points the pooled difference cannot tell (its CI reaches
    # -0.031), keeping fewer than half of the base's passes can.
    cfg = make_cfg(tmp_path / "run", overrides=POOLED)
    freeze_thresholds(cfg)
    base_he, _ = flips(64, 0, passing=7)
    base_mb, _ = flips(64, 0, passing=3)
    write_eval(tmp_path / "run", humaneval=(base_he, [0] * 64), mbpp=(base_mb, [0] * 64))
    summary = run_stage(cfg, "gate")
    assert summary["checks"]["forgetting"] == "inconclusive"
    assert summary["checks"]["forgetting_relative"] == "fail" and summary["verdict"] == "no-deploy"
    verdict = read_json(tmp_path / "run" / "gate" / VERDICT)
    rel = next(c for c in verdict["checks"] if c["name"] == "forgetting_relative")
    assert rel["power"]["margin"] == pytest.approx(0.5 * 10 / 128, abs=1e-4)  # in points
    assert rel["power"]["decidable"] is None  # the ratio's CI is not the difference's
    assert "fail: forgetting_relative" in verdict["reasons"][0]


def test_a_relative_margin_has_no_power_statement_before_the_base_rate_is_known():
    cfg = make_cfg("/tmp/unused", overrides=[*POOLED, "gate.power.flip_rate=0.12"])
    figures = power_plan(cfg.gate, {"humaneval": load_humaneval(), "mbpp": load_mbpp()}, 0.95)
    assert figures["forgetting_relative"]["decidable"] is None
    assert "warning" not in figures["forgetting_relative"]
