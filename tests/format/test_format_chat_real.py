"""Assistant-only loss on a real template without `{% generation %}` markers (SmolLM2's
ChatML): the supervised tokens are exactly the reply and the token that ends the turn, and the
training ids are the inference ids."""

from __future__ import annotations

import pytest

from harness.format.chat import check_template, end_of_turn_id, to_messages, tokenize_chat

pytestmark = pytest.mark.slow
RECORD = {"instruction": "Rename `total` to `count` in utils.py.",
          "response": "--- a/utils.py\n+++ b/utils.py\n@@ -1 +1 @@\n-total = 0\n+count = 0\n"}


@pytest.fixture(scope="module")
def tokenizer(real_model):
    from harness.models.load import load_tokenizer

    return load_tokenizer(real_model)


@pytest.mark.parametrize("system", ["You are a coding assistant.", ""])
def test_the_mask_covers_exactly_the_reply_and_im_end(tokenizer, system):
    # with no system message the template injects its own ("You are a helpful AI assistant
    # named SmolLM"): inference sees it too, so training must as well
    messages = to_messages(RECORD, system)
    assert tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer, messages)) == "<|im_end|>"
    ex = tokenize_chat(tokenizer, messages, max_length=512)
    supervised = [i for i, m in zip(ex["input_ids"], ex["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(supervised) == RECORD["response"] + "<|im_end|>"
    prompt_len = ex["assistant_masks"].index(1)
    inference = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                              tokenize=True, return_dict=True)["input_ids"]
    assert ex["input_ids"][:prompt_len] == list(inference)
    assert check_template(tokenizer, [messages]) == 1


def test_truncation_keeps_the_prompt_and_drops_an_unsupervised_example(tokenizer):
    messages = to_messages(RECORD, "You are a coding assistant.")
    full = tokenize_chat(tokenizer, messages, max_length=512)
    prompt_len = full["assistant_masks"].index(1)
    cut = tokenize_chat(tokenizer, messages, max_length=prompt_len + 3)
    assert sum(cut["assistant_masks"]) == 3
    assert tokenize_chat(tokenizer, messages, max_length=prompt_len) is None
