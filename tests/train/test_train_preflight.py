"""Training's own preflight checks: the memory plan's settings and its refusals."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.rundir import write_stage
from harness.stages import fingerprint, stage_dir
from harness.train import preflight


@pytest.fixture
def cfg_for(tmp_path, harness_cache):
    def make(*overrides: str):
        return make_cfg(tmp_path / "run", tmp_path, list(overrides), harness_cache)
    return make


def test_the_memory_settings_never_change_what_training_produces(cfg_for):
    """Turning the plan's check off to resume a refused or crashed run must not set its
    checkpoints aside: train.memory is operational, outside the train fingerprint."""
    done = stage_dir(cfg_for(), "format")
    done.mkdir(parents=True)
    write_stage(done, "format", "f", {})
    assert fingerprint(cfg_for(), "train") == fingerprint(
        cfg_for("train.memory.check=false", "train.memory.headroom=0.5"), "train")


def test_a_model_without_a_decoder_shape_is_refused_only_while_the_plan_is_checked(cfg_for):
    from transformers import GPT2Config  # no intermediate_size: not a Llama-style block

    with pytest.raises(HarnessError, match=r"train\.memory\.check=false"):
        preflight.check_memory(cfg_for().train, "hf", GPT2Config())
    preflight.check_memory(cfg_for("train.memory.check=false").train, "hf", GPT2Config())
