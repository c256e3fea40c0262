"""Chat examples: rendered with the model's own template, masks on exactly the reply, and a
proof that the training ids are the inference ids, refused with the differing tokens if not."""

from __future__ import annotations

from pathlib import Path

import pytest
import trl
from transformers import AutoTokenizer

from harness.errors import HarnessError
from harness.format.chat import check_template, to_messages, tokenize_chat

RECORD = {"instruction": "Add a helper that doubles numbers",
          "response": "--- a/m.py\n+++ b/m.py\n@@ -0,0 +1,2 @@\n+def double(x):\n+    return 2 * x\n"}
# Qwen2.5's shipped template, as TRL vendors it: no {% generation %} markers.
QWEN25 = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()


@pytest.fixture
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def supervised_text(tokenizer, ex: dict) -> str:
    return tokenizer.decode([t for t, m in zip(ex["input_ids"], ex["assistant_masks"], strict=True) if m])


def inference_prompt(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                              tokenize=True, return_dict=True)["input_ids"])


def test_chat_examples_supervise_exactly_the_reply_and_its_end_of_turn(tokenizer):
    msgs = to_messages(RECORD, "You are helpful.")
    ex = tokenize_chat(tokenizer, msgs, max_length=512)
    assert supervised_text(tokenizer, ex) == RECORD["response"] + "<|im_end|>"
    prompt = inference_prompt(tokenizer, msgs)
    assert ex["input_ids"][:len(prompt)] == prompt and not any(ex["assistant_masks"][:len(prompt)])


def test_a_shipped_template_without_generation_markers_masks_only_the_reply(tokenizer):
    tokenizer.chat_template = QWEN25
    msgs = to_messages(RECORD, "")
    ex = tokenize_chat(tokenizer, msgs, max_length=512)
    # no template whitespace after <|im_end|> is trained on, and the prompt is Qwen's own
    assert supervised_text(tokenizer, ex) == RECORD["response"] + "<|im_end|>"
    assert ex["input_ids"][:ex["assistant_masks"].index(1)] == inference_prompt(tokenizer, msgs)
    assert "You are Qwen" in tokenizer.decode(ex["input_ids"])  # its default system prompt


def test_examples_whose_reply_is_truncated_away_are_dropped(tokenizer):
    long = {**RECORD, "instruction": "word " * 400}
    assert tokenize_chat(tokenizer, to_messages(long, ""), max_length=64) is None


def test_template_check_accepts_the_models_own_template(tokenizer):
    assert check_template(tokenizer, [to_messages(RECORD, "sys"), to_messages(RECORD, "")]) == 2


def test_a_generation_prompt_that_differs_from_training_is_refused_with_the_tokens(tokenizer):
    broken = tokenizer.chat_template.replace(
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}",
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant:\\n' }}")
    assert broken != tokenizer.chat_template
    tokenizer.chat_template = broken
    with pytest.raises(HarnessError, match="chat template mismatch") as err:
        check_template(tokenizer, [to_messages(RECORD, "sys")])
    train, infer = tokenizer.tokenize("assistant\n"), tokenizer.tokenize("assistant:\n")
    i = next(k for k, (a, b) in enumerate(zip(train, infer, strict=False)) if a != b)
    assert f"training ['{train[i]}'" in str(err.value) and f"inference ['{infer[i]}'" in str(err.value)


def test_a_template_that_never_closes_the_reply_is_refused(tokenizer):
    tokenizer.chat_template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    with pytest.raises(HarnessError, match="never learn to stop"):
        tokenize_chat(tokenizer, to_messages(RECORD, ""), max_length=512)
