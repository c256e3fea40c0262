"""Formatting mined records with the tiny model's own tokenizer, chat template and FIM tokens."""

from __future__ import annotations

import random

import pytest
from conftest import make_cfg
from transformers import AutoTokenizer

from harness.errors import HarnessError
from harness.format.chat import check_template, to_messages, tokenize_chat
from harness.format.fim import fim_tokens, sample_holes, tokenize_fim
from harness.io import read_json
from harness.stages import run_stage

RECORD = {"instruction": "Add a helper that doubles numbers",
          "response": "--- a/m.py\n+++ b/m.py\n@@ -0,0 +1,2 @@\n+def double(x):\n+    return 2 * x\n"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_chat_examples_supervise_exactly_the_assistant_reply(tokenizer):
    ex = tokenize_chat(tokenizer, to_messages(RECORD, "You are helpful."), max_length=512)
    supervised = [t for t, m in zip(ex["input_ids"], ex["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(supervised) == RECORD["response"] + "<|im_end|>"


def test_examples_whose_reply_is_truncated_away_are_dropped(tokenizer):
    long = {**RECORD, "instruction": "word " * 400}
    assert tokenize_chat(tokenizer, to_messages(long, ""), max_length=64) is None


def test_template_check_accepts_the_models_own_template(tokenizer):
    assert check_template(tokenizer, [to_messages(RECORD, "sys")]) == 1


def test_template_check_refuses_a_template_that_differs_at_inference(tokenizer):
    broken = tokenizer.chat_template.replace(
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}",
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant:\\n' }}")
    assert broken != tokenizer.chat_template
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = broken
    with pytest.raises(HarnessError, match="chat template mismatch"):
        check_template(tokenizer, [to_messages(RECORD, "sys")])


def test_fim_uses_the_models_sentinels_and_supervises_only_the_middle(tokenizer):
    toks = fim_tokens(tokenizer, {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>",
                                  "middle": "<|fim_middle|>", "end": "<|endoftext|>"})
    code = "def f(x):\n    y = x + 1\n    return y\n\n\nprint(f(2))\n"
    hole = sample_holes(code, random.Random(0), 1, max_middle_lines=1, context_lines=10)[0]
    assert hole.prefix + hole.middle + hole.suffix == code
    ex = tokenize_fim(tokenizer, toks, hole, max_length=128)
    ids = ex["input_ids"]
    assert ids[0] == toks.prefix and ids.count(toks.suffix) == 1
    supervised = [t for t, m in zip(ids, ex["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(supervised) == hole.middle + "<|endoftext|>"


def test_a_model_without_fim_tokens_is_refused(tokenizer):
    with pytest.raises(HarnessError, match="no FIM prefix token"):
        fim_tokens(tokenizer, {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>",
                               "middle": "<fim_middle>", "end": "<|endoftext|>"})


def test_format_stage_writes_dataset_and_card(tmp_path, history_repo, harness_cache):
    from datasets import load_from_disk

    cfg = make_cfg(tmp_path / "run", history_repo, ["data.format.max_length=256"], harness_cache)
    run_stage(cfg, "mine")
    card = run_stage(cfg, "format")
    out = tmp_path / "run" / "format"
    assert read_json(out / "dataset_card.json") == card
    ds = load_from_disk(str(out / "dataset"))
    assert len(ds) == sum(card["examples"].values())
    assert card["examples"]["commit"] == 9 and card["examples"]["fim"] > 0
    assert card["template_checked_examples"] == 9 and all(len(r) <= 256 for r in ds["input_ids"])
    # a rerun with identical inputs is skipped; a changed setting re-formats
    assert run_stage(cfg, "format") == card
    cfg2 = make_cfg(tmp_path / "run", history_repo, ["data.format.max_length=200"], harness_cache)
    assert run_stage(cfg2, "format")["max_length"] == 200
