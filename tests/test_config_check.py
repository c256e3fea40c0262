"""Every setting's type, range and choice is checked on the real composed conf/, before any work."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from conftest import make_cfg

from harness.config_check import (
    EvalSettings,
    GateSettings,
    JudgeSettings,
    LoraSettings,
    TrainSettings,
    check_config,
    check_section,
)
from harness.errors import HarnessError

SHIPPED = [[], ["train=qlora"], ["train=unsloth"], ["judge=openai"], ["experiment=smoke"],
           ["experiment=demo"], ["experiment=demo-harmful"], ["experiment=demo", "judge=openai"]]


@pytest.mark.parametrize("overrides", SHIPPED)
def test_every_shipped_option_and_experiment_passes_and_comes_back_typed(tmp_path, overrides):
    typed = check_config(make_cfg(tmp_path, None, overrides))
    assert isinstance(typed["train"], TrainSettings) and isinstance(typed["train"].lora, LoraSettings)
    assert isinstance(typed["eval"], EvalSettings) and isinstance(typed["judge"], JudgeSettings)
    assert isinstance(typed["gate"], GateSettings) and typed["gate"].checks["forgetting"].rule == "max_drop"


def test_the_declared_defaults_are_the_shipped_ones(tmp_path):
    typed = check_config(make_cfg(tmp_path))
    assert typed["train"] == TrainSettings()
    assert typed["eval"] == EvalSettings()
    assert typed["judge"] == JudgeSettings()
    assert dataclasses.replace(typed["gate"], checks={}) == GateSettings()


def test_values_are_converted_as_hydra_would(tmp_path):
    t = check_config(make_cfg(tmp_path, None, ["train.lr=1", "train.lora.target_modules=[q_proj,v_proj]",
                                               "train.gradient_checkpointing=true"]))["train"]
    assert t.lr == 1.0 and isinstance(t.lr, float) and t.lora.target_modules == ["q_proj", "v_proj"]
    assert t.gradient_checkpointing is True


def test_a_key_no_section_declares_is_refused_as_a_typo(tmp_path):
    with pytest.raises(HarnessError, match=r"train.lr_sheduler: not a setting of train .* Fix: "
                                           r"correct its spelling"):
        check_config(make_cfg(tmp_path, None, ["+train.lr_sheduler=linear"]))
    with pytest.raises(HarnessError, match=r"gate.checks.fim.margin: not a setting of gate"):
        check_config(make_cfg(tmp_path, None, ["+gate.checks.fim.margin=0.1"]))


def test_keys_read_but_not_shipped_are_declared(tmp_path):
    typed = check_config(make_cfg(tmp_path, None, ["+eval.device=cpu", "+train.lora.bias=all"]))
    assert typed["eval"].device == "cpu" and typed["train"].lora.bias == "all"


def test_a_new_gate_check_is_typed_like_the_shipped_ones(tmp_path):
    gate = check_config(make_cfg(tmp_path, None, [
        "+gate.checks.infill={metric: humaneval_infill_single.pass@1, rule: max_drop, fail: 0.1}"]))["gate"]
    assert gate.checks["infill"].fail == 0.1 and gate.checks["infill"].hold_on_inconclusive


@pytest.mark.parametrize(("override", "message"), [
    ("train.max_steps=-5", r"train.max_steps=-5: expected -1 \(train for train.epochs\) or a step count >= 1"),
    ("train.max_steps=0", "train.max_steps=0: expected -1"),
    ("train.lr=abc", "train.lr='abc': Value 'abc' of type 'str' could not be converted to Float"),
    ("train.lr=-1e-4", "train.lr=-0.0001: expected a number > 0"),
    ("train.lr=nan", "train.lr=nan: expected a number > 0"),
    ("train.batch_size=0", "train.batch_size=0: expected a whole number >= 1"),
    ("train.batch_size=1.5", "train.batch_size=1.5: Value '1.5' of type 'float' could not be converted to Integer"),
    ("train.lora.r=0", "train.lora.r=0: expected a whole number >= 1"),
    ("train.lora.dropout=1.5", r"train.lora.dropout=1.5: expected a probability in \[0, 1\)"),
    ("train.lora.target_modules=[]", "train.lora.target_modules"),
    ("train.method=full", "train.method='full': expected one of lora, qlora"),
    ("train.backend=tpu", "train.backend='tpu': expected one of auto, hf, unsloth"),
    ("train.lr_scheduler=cosin", "train.lr_scheduler='cosin': expected one of .*cosine_with_restarts"),
    ("train.optim=adamw", "train.optim='adamw': expected one of .*adamw_torch"),
    ("train.packing=maybe", "train.packing='maybe': Value 'maybe' is not a valid bool"),
    ("train.save_total_limit=0", r"train.save_total_limit=0: expected null \(keep every checkpoint\) or"),
    ("train.seed=-1", r"train.seed=-1: expected a seed in \[0, 2\*\*32\)"),
    ("train.report_to=tensorbored", "train.report_to='tensorbored': expected none, or one or a list of .*wandb"),
    ("train.report_to=[tensorboard,wandbb]", "train.report_to=.*: expected none, or one or a list of"),
    ("train.qlora.quant_type=int8", "train.qlora.quant_type='int8': expected one of nf4, fp4"),
    ("train.memory.headroom=0", r"train.memory.headroom=0.0: expected a share in \(0, 1\]"),
    ("eval.engine=vlm", "eval.engine='vlm': expected one of hf, vllm, openai"),
    ("eval.runner=bogus", "eval.runner='bogus': expected one of harness, lm_eval"),
    ("eval.scorer=exec", "eval.scorer='exec': expected one of sandbox, bigcode"),
    ("eval.top_p=0", r"eval.top_p=0.0: expected a probability in \(0, 1\]"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens=0: expected a whole number >= 1"),
    ("eval.n_samples=3", r"eval.n_samples=3: expected 1 with eval.temperature=0 .* Or sample: set eval.temperature"),
    ("eval.pass_at_k=[1,10]", r"eval.pass_at_k=\[1, 10\]: expected each k in \[1, eval.n_samples=1\]"),
    ("eval.humaneval.limit=0", r"eval.humaneval.limit=0: expected null \(no limit\) or a whole number >= 1"),
    ("eval.humaneval_infill.spans=[single,triple]", "eval.humaneval_infill.spans=.*: expected a list of single, multi"),
    ("eval.humaneval_infill.max_lines=1", "eval.humaneval_infill.max_lines=1: .* Multi-line holes need 2"),
    ("eval.bigcode.task=apps", "eval.bigcode.task='apps': expected one of humaneval, mbpp"),
    ("eval.sandbox.mode=docker", r"eval.sandbox.mode='docker': expected null \(the strongest that works\) or one of bwrap"),
    ("eval.sandbox.require=[network_isolated,airgapped]", "eval.sandbox.require=.*: expected a list of network_isolated"),
    ("eval.openai.max_retries=-1", "eval.openai.max_retries=-1: expected a whole number >= 0"),
    ("eval.fim.holes=abc", "eval.fim.holes='abc': Value 'abc' of type 'str' could not be converted to Integer"),
    ("judge.output=yaml", "judge.output='yaml': expected one of choice, json"),
    ("judge.timeout_s=-1", "judge.timeout_s=-1.0: expected a number > 0"),
    ("judge.budget_usd=0", r"judge.budget_usd=0.0: expected null \(no cap\) or a number > 0"),
    ("judge.max_concurrency=0", "judge.max_concurrency=0: expected a whole number >= 1"),
    ("judge.reliability.items=1", r"judge.reliability.items=1: expected null \(every judged item\) or a whole number >= 2"),
    ("judge.reliability.pairwise=sometimes", "judge.reliability.pairwise='sometimes': Value 'sometimes' is not a valid bool"),
    ("gate.bootstrap.confidence=2", r"gate.bootstrap.confidence=2.0: expected a number in \[0.5, 0.999\]"),
    ("gate.checks.fim.rule=at_least", "gate.checks.fim.rule='at_least': expected one of max_drop, min_gain"),
    ("+gate.checks.fim.warn=0.01", r"gate.checks.fim.warn=0.01: expected no warn band \(only max_drop has one\)"),
    ("gate.checks.mbpp.warn=0.5", r"gate.checks.mbpp.warn=0.5: expected a number in \[0, fail=0.05\]"),
    ("gate.checks.forgetting_relative.fail=1.5",
     r"gate.checks.forgetting_relative.fail=1.5: expected a share of the base.s rate in \[0, 1\]"),
    ("gate.checks.mbpp.metric=mbpp", "gate.checks.mbpp.metric='mbpp': expected <task>.<field>"),
    ("gate.decision.on_inconclusive=maybe", "gate.decision.on_inconclusive='maybe': expected one of hold"),
    ("gate.judge_reliability.max_first_position_bias=0.7", "gate.judge_reliability.max_first_position_bias=0.7"),
])
def test_a_bad_value_is_refused_naming_the_key_and_the_fix(tmp_path, override, message):
    with pytest.raises(HarnessError, match=message) as e:
        check_config(make_cfg(tmp_path, None, [override]))
    assert "Fix" in str(e.value)


def test_the_vllm_lora_rank_must_hold_the_trained_adapter(tmp_path):
    with pytest.raises(HarnessError, match=r"eval.vllm.max_lora_rank=64 is below train.lora.r=128: "
                                           r"vLLM cannot load the candidate adapter. Fix: "):
        check_config(make_cfg(tmp_path, None, ["eval.engine=vllm", "train.lora.r=128"]))
    check_config(make_cfg(tmp_path, None, ["eval.engine=hf", "train.lora.r=128"]))  # hf: no cap
    check_config(make_cfg(tmp_path, None, ["eval.engine=vllm", "eval.vllm.max_lora_rank=128",
                                           "train.lora.r=128"]))


def test_a_plain_mapping_such_as_a_frozen_gate_is_checked_the_same_way():
    frozen = {"checks": {"fim": {"rule": "min_gain", "fail": 0.01}}, "power": None}
    with pytest.raises(HarnessError, match=r"gate.checks.fim.metric"):
        check_section("gate", frozen)
    frozen["checks"]["fim"]["metric"] = "fim.exact_match"
    assert check_section("gate", frozen).checks["fim"].metric == "fim.exact_match"


@pytest.mark.parametrize("override", ["gate.checks.fim.rule=at_least", "gate.bootstrap.samples=10",
                                      "gate.checks.mbpp.warn=0.5", "gate.decision.min_items=0",
                                      "gate.power.flip_rate=0", "gate.checks.fim.metric=fim"])
def test_the_gate_rule_and_the_declaration_refuse_the_same_values(tmp_path, override):
    """gate/rules.py's own check still guards the frozen copy: both must agree."""
    from omegaconf import OmegaConf

    from harness.gate.rules import validate

    cfg = make_cfg(tmp_path, None, [override])
    key = override.split("=")[0]
    with pytest.raises(HarnessError, match=key):
        validate(OmegaConf.to_container(cfg.gate, resolve=True))
    with pytest.raises(HarnessError, match=key):
        check_config(cfg)


def test_the_declared_choices_are_the_ones_the_code_acts_on():
    from harness import config_check as c
    from harness.eval import bigcode, infill
    from harness.eval import stage as eval_stage
    from harness.eval.engines import pool
    from harness.gate import rules
    from harness.judge import rubric
    from harness.sandbox import execute
    from harness.train import preflight

    declared = {"engines": c.ENGINES, "methods": c.METHODS, "runners": c.RUNNERS,
                "scorers": c.SCORERS, "judge outputs": c.OUTPUT_MODES, "infill spans": c.INFILL_SPANS,
                "bigcode tasks": c.BIGCODE_TASKS, "sandbox modes": c.SANDBOX_MODES,
                "sandbox guarantees": c.SANDBOX_GUARANTEES, "gate rules": c.GATE_RULES,
                "on inconclusive": c.ON_INCONCLUSIVE,
                "reliability keys": tuple(f.name for f in dataclasses.fields(c.JudgeReliabilityThresholds))}
    acted_on = {"engines": pool.ENGINES, "methods": preflight.METHODS, "runners": eval_stage.RUNNERS,
                "scorers": eval_stage.SCORERS, "judge outputs": rubric.OUTPUT_MODES,
                "infill spans": tuple(infill.TASKS), "bigcode tasks": tuple(bigcode.TASKS),
                "sandbox modes": execute.MODES,
                "sandbox guarantees": tuple(execute.guarantees("bwrap", "nobody")),
                "gate rules": rules.RULES, "on inconclusive": rules.ON_INCONCLUSIVE,
                "reliability keys": rules.RELIABILITY_KEYS}
    assert {k: set(v) for k, v in acted_on.items()} == {k: set(v) for k, v in declared.items()}


def test_the_command_refuses_a_bad_setting_with_exit_2_before_any_work(tmp_path, history_repo, harness_cache):
    env = {**os.environ, "HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "run", "run_name=bad",
                          f"data.repo={history_repo}", "train.lr=abc"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert res.returncode == 2 and "train.lr='abc'" in res.stdout and "Traceback" not in res.stdout
    assert not (tmp_path / "runs" / "bad" / "mine").exists()  # nothing mined before the refusal
