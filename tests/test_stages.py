"""What a stage's fingerprint and resume key depend on, read from the real composed conf/:
operational keys never cost finished work or checkpoints; a raised train.max_steps keeps the
checkpoints usable; anything that changes the weights does not."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from harness.io import read_json
from harness.rundir import THRESHOLDS, write_stage
from harness.stages import (
    changed_keys,
    fingerprint_parts,
    resume_key,
    run_stage,
    stable_hash,
    stage_dir,
)

BASE = ["train.max_steps=20"]


def keys(tmp_path, *overrides: str) -> tuple[str, str]:
    cfg = make_cfg(tmp_path, None, [*BASE, *overrides])
    write_stage(tmp_path / "format", "format", "f" * 64, {})  # a finished upstream
    parts = fingerprint_parts(cfg, "train")
    return stable_hash(parts), resume_key(parts, "train")


@pytest.mark.parametrize("override", ["train.logging_steps=2", "train.report_to=none", "train.save_steps=7",
                                      "train.save_total_limit=5", "train.eval_batch_size=16"])
def test_operational_training_keys_change_neither_key(tmp_path, override):
    assert keys(tmp_path, override) == keys(tmp_path)


def test_a_raised_max_steps_reruns_the_stage_but_keeps_its_checkpoints(tmp_path):
    fp, resume = keys(tmp_path)
    more_fp, more_resume = keys(tmp_path, "train.max_steps=40")
    assert more_fp != fp and more_resume == resume
    assert keys(tmp_path, "train.max_steps=-1")[1] != resume  # epoch mode: step count unknown


@pytest.mark.parametrize("override", ["train.lr=1e-3", "train.lora.r=8", "train.seed=3", "train.batch_size=2",
                                      "train.epochs=2", "train.lr_scheduler=linear"])
def test_keys_that_change_the_weights_change_both(tmp_path, override):
    fp, resume = keys(tmp_path)
    assert keys(tmp_path, override)[0] != fp and keys(tmp_path, override)[1] != resume


def test_changed_keys_name_each_setting_with_old_and_new_value():
    old = {"train": {"lr": 0.005, "lora": {"r": 16}}, "upstream": "a"}
    new = {"train": {"lr": 0.001, "lora": {"r": 16, "use_dora": True}}, "upstream": "a"}
    assert changed_keys(old, new) == ["train.lora.use_dora: '<unset>' → True",
                                      "train.lr: 0.005 → 0.001"]


def test_eval_freezes_the_gate_thresholds_before_its_code_runs(tmp_path):
    """The pipeline's `before` hook: even an eval that fails at once leaves the gate's
    thresholds frozen, so no model output can exist without them."""
    cfg = make_cfg(tmp_path / "run", tmp_path, ["gate.checks.mbpp.fail=0.07"])
    for name in ("mine", "format", "train"):  # finished, but empty: eval fails reading them
        (out := stage_dir(cfg, name)).mkdir(parents=True)
        write_stage(out, name, "f", {})
    with pytest.raises(FileNotFoundError, match=r"records\.jsonl"):
        run_stage(cfg, "eval")
    frozen = read_json(tmp_path / "run" / THRESHOLDS)
    assert frozen["gate"]["checks"]["mbpp"]["fail"] == 0.07
