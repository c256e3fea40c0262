"""Every setting's type and range is checked on the real composed conf/, before any work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import make_cfg

from harness.config_check import LoraSettings, TrainSettings, check_config
from harness.errors import HarnessError


def test_the_shipped_configs_pass_and_come_back_typed(tmp_path):
    for overrides in ([], ["train=qlora"], ["experiment=smoke"], ["judge=openai"]):
        typed = check_config(make_cfg(tmp_path, None, overrides))
        assert isinstance(typed["train"], TrainSettings) and isinstance(typed["train"].lora, LoraSettings)
    assert typed["train"].max_length == 1024 or typed["train"].max_length > 0


def test_values_are_converted_as_hydra_would(tmp_path):
    t = check_config(make_cfg(tmp_path, None, ["train.lr=1", "train.lora.target_modules=[q_proj,v_proj]",
                                               "train.gradient_checkpointing=true"]))["train"]
    assert t.lr == 1.0 and isinstance(t.lr, float) and t.lora.target_modules == ["q_proj", "v_proj"]
    assert t.gradient_checkpointing is True


def test_keys_added_by_other_features_do_not_break_the_check(tmp_path):
    check_config(make_cfg(tmp_path, None, ["+train.trainable_tokens=[1,2]", "+train.lora.use_dora=true",
                                           "+eval.new_task={limit: 3}"]))


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
    ("train.save_total_limit=0", "train.save_total_limit=0: expected null"),
    ("train.seed=-1", "train.seed=-1: expected a seed"),
    ("train.qlora.quant_type=int8", "train.qlora.quant_type='int8': expected one of nf4, fp4"),
    ("eval.top_p=0", r"eval.top_p=0.0: expected a probability in \(0, 1\]"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens=0: expected a whole number >= 1"),
    ("judge.timeout_s=-1", "judge.timeout_s=-1.0: expected a number > 0"),
    ("judge.budget_usd=-5", "judge.budget_usd=-5.0: expected null"),
    ("gate.bootstrap.confidence=2", "gate.bootstrap.confidence=2"),
])
def test_a_bad_value_is_refused_naming_the_key_and_the_fix(tmp_path, override, message):
    with pytest.raises(HarnessError, match=message) as e:
        check_config(make_cfg(tmp_path, None, [override]))
    assert "Fix" in str(e.value)


def test_the_command_refuses_a_bad_setting_with_exit_2_before_any_work(tmp_path, history_repo, harness_cache):
    env = {**os.environ, "HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "run", "run_name=bad",
                          f"data.repo={history_repo}", "train.lr=abc"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert res.returncode == 2 and "train.lr='abc'" in res.stdout and "Traceback" not in res.stdout
    assert not (tmp_path / "runs" / "bad" / "mine").exists()  # nothing mined before the refusal
