"""Chat examples rendered only through the target tokenizer's own chat template."""

from __future__ import annotations

from harness.errors import HarnessError


def to_messages(record: dict, system_prompt: str) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*msgs, {"role": "user", "content": record["instruction"]},
            {"role": "assistant", "content": record["response"]}]


def tokenize_chat(tokenizer, messages: list[dict], max_length: int) -> dict | None:
    """input_ids + assistant_masks (1 on the assistant's tokens, incl. its end-of-turn token).

    Truncation keeps the start. Returns None when nothing supervised is left, so an example
    whose assistant part was cut away is dropped, never trained on silently.
    """
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"])[:max_length], list(out["assistant_masks"])[:max_length]
    if not any(mask):
        return None
    return {"input_ids": ids, "assistant_masks": mask}


def check_template(tokenizer, messages_list: list[list[dict]]) -> int:
    """Prove that training sees the token ids inference produces.

    At inference the prompt is rendered with `add_generation_prompt=True` and the model
    continues it; training must therefore contain exactly those prompt ids, immediately
    followed by the supervised assistant tokens. Raises with the first differing tokens.
    Returns the number of examples checked.
    """
    for messages in messages_list:
        full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
        ids, mask = list(full["input_ids"]), list(full["assistant_masks"])
        prompt = list(tokenizer.apply_chat_template(messages[:-1], tokenize=True, return_dict=True,
                                                    add_generation_prompt=True)["input_ids"])
        start = mask.index(1) if 1 in mask else -1
        if ids[: len(prompt)] != prompt or start != len(prompt):
            i = next((k for k, (a, b) in enumerate(zip(ids, prompt, strict=False)) if a != b),
                     min(len(prompt), len(ids)))
            raise HarnessError(
                "chat template mismatch: training ids differ from inference ids at position "
                f"{i}: training {tokenizer.convert_ids_to_tokens(ids[i:i + 5])} vs inference "
                f"{tokenizer.convert_ids_to_tokens(prompt[i:i + 5])} (supervision starts at {start}, "
                f"generation prompt ends at {len(prompt)}). Fix: use a chat template whose "
                "assistant turn starts exactly where add_generation_prompt ends, with "
                "{% generation %} around the assistant content (model.chat_template)."
            )
    return len(messages_list)
