"""Training the tiny model for real: LoRA through TRL's SFTTrainer on the CPU."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.io import read_json
from harness.stages import run_stage
from harness.train.backends import select_backend
from harness.train.stage import build_trainer

TRAIN = ["data.format.max_length=192", "train.batch_size=4", "train.lr=5e-3", "train.max_steps=12",
         "train.logging_steps=1", "train.save_steps=6", "train.warmup=0", "train.lr_scheduler=constant"]


@pytest.fixture
def formatted(tmp_path, history_repo, harness_cache):
    cfg = make_cfg(tmp_path / "run", history_repo, TRAIN, harness_cache)
    run_stage(cfg, "mine")
    run_stage(cfg, "format")
    return cfg


def test_labels_are_masked_on_every_non_assistant_token(formatted, tmp_path):
    trainer, backend, _, tokenizer = build_trainer(formatted, tmp_path / "t")
    assert backend == "hf"
    masks = trainer.train_dataset  # TRL folded `assistant_masks` into `labels`
    from datasets import load_from_disk

    source = load_from_disk(str(tmp_path / "run" / "format" / "dataset"))
    for row, src in zip(masks, source, strict=True):
        assert row["input_ids"] == src["input_ids"]
        for tok, label, m in zip(row["input_ids"], row["labels"], src["assistant_masks"], strict=True):
            assert label == (tok if m else -100)
    chat = next(i for i, s in enumerate(source) if s["kind"] == "commit")
    shown = tokenizer.decode([t for t in masks[chat]["labels"] if t != -100])
    reply = source[chat]["messages"][-1]["content"] + "<|im_end|>"
    assert reply.startswith(shown) and len(shown) > 100  # truncated at max_length, never the prompt


def test_lora_training_lowers_the_loss_and_writes_a_manifest(formatted):
    summary = run_stage(formatted, "train")
    assert summary["global_step"] == 12
    assert summary["last_loss"] < summary["first_loss"] - 0.5
    train = formatted.run_dir + "/train"
    manifest = read_json(f"{train}/manifest.json")
    assert manifest["backend"] == "hf" and manifest["method"] == "lora"
    assert manifest["dataset_hash"] == read_json(f"{formatted.run_dir}/format/dataset_card.json")["content_hash"]
    assert manifest["versions"]["trl"] and manifest["tokens_seen"] > 0
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(f"{train}/adapter").base_model_name_or_path == manifest["base_model"]


def test_unsloth_without_a_gpu_is_refused_before_any_work():
    with pytest.raises(HarnessError, match="needs a CUDA GPU"):
        select_backend("unsloth")
    assert select_backend("auto") == "hf"
