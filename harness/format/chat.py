"""Chat examples rendered only through the target tokenizer's own chat template, with a proof
that the ids trained on are exactly the ids inference produces.

The assistant mask is derived from two renders of the same template rather than from
`{% generation %}` markers: most shipped templates (Qwen2.5-Coder's included) have no markers,
and TRL's patched training templates also supervise template whitespace outside the reply. At
inference the prompt is `apply_chat_template(messages[:-1], add_generation_prompt=True)` and
the model continues it, so a training example must be exactly that prompt followed by the
reply and the token that ends the turn; anything else is refused with the differing tokens.
"""

from __future__ import annotations

from harness.errors import HarnessError

FIX = ("Fix: set model.chat_template to the template the model is served with, written so that "
       "the assistant turn starts exactly where add_generation_prompt ends and closes with a "
       "special end-of-turn token (e.g. <|im_end|> for ChatML).")


def to_messages(record: dict, system_prompt: str) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*msgs, {"role": "user", "content": record["instruction"]},
            {"role": "assistant", "content": record["response"]}]


def _ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def _is_special(tokenizer, token_id: int) -> bool:
    added = tokenizer.added_tokens_decoder.get(token_id)
    return token_id in tokenizer.all_special_ids or bool(added is not None and added.special)


def _differ(tokenizer, what: str, train: list[int], infer: list[int]) -> HarnessError:
    i = next((k for k, (a, b) in enumerate(zip(train, infer, strict=False)) if a != b),
             min(len(train), len(infer)))
    return HarnessError(
        f"chat template mismatch{what}: the training ids differ from the inference ids "
        f"(add_generation_prompt=True) at position {i}: training "
        f"{tokenizer.convert_ids_to_tokens(train[i:i + 5])} vs inference "
        f"{tokenizer.convert_ids_to_tokens(infer[i:i + 5])}. {FIX}"
    )


def end_of_turn_id(tokenizer, messages: list[dict]) -> int:
    """The token the template closes an assistant turn with, i.e. the one inference stops on:
    the first token after the generation prompt when the reply is empty."""
    empty = [*messages[:-1], {**messages[-1], "content": ""}]
    prompt, full = _ids(tokenizer, empty[:-1], True), _ids(tokenizer, empty)
    if full[:len(prompt)] != prompt:
        raise _differ(tokenizer, "", full, prompt)
    if len(full) == len(prompt) or not _is_special(tokenizer, full[len(prompt)]):
        after = tokenizer.convert_ids_to_tokens(full[len(prompt):len(prompt) + 3])
        raise HarnessError(
            f"the chat template does not close the assistant turn with a special token (after an "
            f"empty reply it renders {after}), so the model would never learn to stop. {FIX}"
        )
    return full[len(prompt)]


def render_chat(tokenizer, messages: list[dict], eot: int) -> tuple[list[int], int]:
    """(ids, prompt_len): the generation prompt, the reply, and the closing `eot` token.

    Raises when the full render does not start with the inference prompt, naming the tokens.
    """
    prompt, full = _ids(tokenizer, messages[:-1], True), _ids(tokenizer, messages)
    if full[:len(prompt)] != prompt:
        raise _differ(tokenizer, "", full, prompt)
    reply = full[len(prompt):]
    if eot not in reply:
        raise HarnessError(f"the rendered reply has no end-of-turn token "
                           f"{tokenizer.convert_ids_to_tokens([eot])}. {FIX}")
    end = len(prompt) + len(reply) - reply[::-1].index(eot)  # trailing template text is cut
    return full[:end], len(prompt)


def tokenize_chat(tokenizer, messages: list[dict], max_length: int,
                  eot: int | None = None) -> dict | None:
    """input_ids + assistant_masks (1 on the reply and its end-of-turn token).

    Truncation keeps the start. Returns None when nothing supervised is left, so an example
    whose reply was cut away is dropped (and counted by the caller), never trained on silently.
    """
    eot = end_of_turn_id(tokenizer, messages) if eot is None else eot
    ids, prompt_len = render_chat(tokenizer, messages, eot)
    mask = [0] * prompt_len + [1] * (len(ids) - prompt_len)
    if prompt_len >= max_length:
        return None
    return {"input_ids": ids[:max_length], "assistant_masks": mask[:max_length]}


def check_template(tokenizer, messages_list: list[list[dict]]) -> int:
    """Prove, for every conversation given, that training sees the ids inference produces.

    Raises with the first differing tokens; returns the number of conversations checked.
    """
    if not messages_list:
        return 0
    eot = end_of_turn_id(tokenizer, messages_list[0])
    for messages in messages_list:
        render_chat(tokenizer, messages, eot)
    return len(messages_list)
