"""QLoRA on the CPU: bitsandbytes quantizes the tiny model's linear layers to NF4 and the LoRA
adapters on top train; without bitsandbytes the request is refused before anything loads."""

from __future__ import annotations

import sys

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.io import read_json
from harness.rundir import MANIFEST
from harness.stages import run_stage
from harness.train.stage import build_trainer

QLORA = ["train=qlora", "data.format.max_length=160", "train.batch_size=4", "train.lr=5e-3",
         "train.max_steps=10", "train.logging_steps=1", "train.warmup=0",
         "train.lr_scheduler=constant", "train.report_to=none"]


def test_qlora_trains_an_adapter_over_nf4_weights(tmp_path, history_repo, harness_cache):
    import bitsandbytes as bnb

    cfg = make_cfg(tmp_path / "run", history_repo, QLORA, harness_cache)
    run_stage(cfg, "format")
    trainer, *_ = build_trainer(cfg.train, cfg.model, tmp_path / "run" / "format",
                                tmp_path / "probe", run_name=cfg.run_name, cache_dir=harness_cache)
    quantized = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 14 and quantized[0].weight.quant_state.quant_type == "nf4"
    del trainer
    summary = run_stage(cfg, "train")
    assert summary["method"] == "qlora" and summary["global_step"] == 10
    assert summary["last_loss"] < summary["first_loss"] - 0.3
    assert read_json(tmp_path / "run" / "train" / MANIFEST)["config"]["train"]["qlora"][
        "quant_type"] == "nf4"


def test_qlora_without_bitsandbytes_is_refused_before_loading(tmp_path, harness_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what Python does for a missing package
    cfg = make_cfg(tmp_path / "run", None, ["train=qlora"], harness_cache)
    with pytest.raises(HarnessError, match=r"train\.method=qlora needs bitsandbytes"):
        build_trainer(cfg.train, cfg.model, tmp_path / "run" / "format", tmp_path / "out",
                      run_name=cfg.run_name, cache_dir=harness_cache)
