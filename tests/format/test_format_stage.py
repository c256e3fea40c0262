"""The format stage on a real mined repository: the dataset, its card, the content-hash cache,
and the errors a user can hit before any training starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.io import read_json, read_jsonl, write_jsonl
from harness.models.tiny import CHAT_TEMPLATE
from harness.rundir import DATASET_CARD, RECORDS, write_stage
from harness.stages import run_stage


def model_copy(tiny_model: str, dst: Path, template: bool = True) -> Path:
    """A local model directory like a user's, optionally without a chat template (a base model)."""
    shutil.copytree(tiny_model, dst)
    if not template:
        (dst / "chat_template.jinja").unlink()
    return dst


def write_records(run_dir: Path, records: list[dict]) -> None:
    """A finished mine stage with exactly these records."""
    write_jsonl(run_dir / "mine" / RECORDS, records)
    write_stage(run_dir / "mine", "mine", "given", {})


def test_format_stage_writes_the_dataset_its_card_and_a_held_out_split(tmp_path, history_repo,
                                                                       harness_cache):
    from datasets import load_from_disk

    # mined pairs hold the code they change and its new version: this history's 22-line
    # functions fit 600 tokens (with the hunk's own context, prompts stay far under 256)
    cfg = make_cfg(tmp_path / "run", history_repo, ["data.format.max_length=256", "data.mine.fit_tokens=600"],
                   harness_cache)
    card = run_stage(cfg, "format")
    out = tmp_path / "run" / "format"
    assert read_json(out / DATASET_CARD) == card
    ds = load_from_disk(str(out / "dataset"))
    mined = list(read_jsonl(tmp_path / "run" / "mine" / RECORDS))
    pairs = [r for r in mined if r["split"] == "train" and r["kind"] != "fim_source"]
    kinds, dropped = card["examples"], card["dropped"]
    chat = sum(n for k, n in kinds.items() if k not in ("fim_psm", "fim_spm", "code"))
    assert len(ds) == sum(kinds.values()) and "chat_no_supervised_tokens_after_truncation" not in dropped
    assert chat == len(pairs) - dropped.get("mix_chat_subsampled", 0) > 0
    # code_share=0.5: the side in excess was subsampled, and counted, to match the other
    assert chat == kinds.get("fim_psm", 0) + kinds.get("fim_spm", 0) + kinds.get("code", 0)
    assert dropped.get("mix_chat_subsampled", 0) + dropped.get("mix_code_subsampled", 0) > 0
    assert all(len(r) <= 256 for r in ds["input_ids"]) and all(any(m) for m in ds["assistant_masks"])
    assert card["template_checked_examples"] >= chat and card["chat_template"]["source"] == "tokenizer"
    assert card["eval"]["examples"] and len(load_from_disk(str(out / "eval_dataset"))) == sum(
        card["eval"]["examples"].values())
    # the same rows, for other trainers: chat pairs as messages, code examples as text
    assert card["portable"]["chat.train"] == chat
    assert card["portable"]["text.train"] == len(ds) - chat
    assert (out / "portable" / "chat.train.parquet").is_file()


def test_a_rerun_is_skipped_and_a_changed_tokenizer_file_reformats(tmp_path, history_repo,
                                                                   harness_cache, tiny_model, caplog):
    model = model_copy(tiny_model, tmp_path / "model")
    cfg = make_cfg(tmp_path / "run", history_repo, [f"model.name_or_path={model}"], harness_cache)
    card = run_stage(cfg, "format")
    caplog.set_level("INFO")
    assert run_stage(cfg, "format") == card and "format: up to date, skipped" in caplog.text
    # same config, same path: only the template file's content changed
    (model / "chat_template.jinja").write_text(CHAT_TEMPLATE.replace("message['content']",
                                                                     "message['content'] | trim"))
    again = run_stage(cfg, "format")
    assert again["template_hash"] != card["template_hash"]


def test_a_base_model_needs_a_configured_template_which_the_card_records(tmp_path, history_repo,
                                                                         harness_cache, tiny_model):
    model = model_copy(tiny_model, tmp_path / "base", template=False)
    cfg = make_cfg(tmp_path / "run", history_repo, [f"model.name_or_path={model}"], harness_cache)
    with pytest.raises(HarnessError, match="no chat template and none is configured"):
        run_stage(cfg, "format")
    cfg.model.chat_template = CHAT_TEMPLATE  # what a model yaml for a base model sets
    card = run_stage(cfg, "format")
    assert card["chat_template"] == {"source": "configured", "text": CHAT_TEMPLATE,
                                     "end_of_turn": "<|im_end|>"}


def test_max_length_shorter_than_every_example_is_refused(tmp_path, history_repo, harness_cache):
    cfg = make_cfg(tmp_path / "run", history_repo, ["data.format.max_length=24"], harness_cache)
    with pytest.raises(HarnessError, match=r"max_length=24 is shorter than every chat example \(the "
                                           r"shortest chat prompt is \d+ tokens\)"):
        run_stage(cfg, "format")
    assert not (tmp_path / "run" / "format").exists()


def test_no_train_records_is_an_empty_dataset_error(tmp_path, harness_cache):
    cfg = make_cfg(tmp_path / "run", None, [], harness_cache)
    write_records(tmp_path / "run", [{"id": "c1", "kind": "commit", "split": "test",
                                      "instruction": "Fix it", "response": "+x\n"}])
    with pytest.raises(HarnessError, match="none is in the train split"):
        run_stage(cfg, "format")


def test_a_model_that_is_not_a_causal_lm_is_refused_before_formatting(tmp_path, harness_cache):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path / "bert")
    cfg = make_cfg(tmp_path / "run", None, [f"model.name_or_path={tmp_path / 'bert'}"], harness_cache)
    write_records(tmp_path / "run", [{"id": "c1", "kind": "commit", "split": "train",
                                      "instruction": "Fix it", "response": "+x\n"}])
    with pytest.raises(HarnessError, match=r"\['BertForMaskedLM'\], not a causal LM"):
        run_stage(cfg, "format")
