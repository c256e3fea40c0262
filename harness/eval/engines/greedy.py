"""Greedy decoding that drops each row from the batch as soon as it is done.

transformers' ``generate`` keeps a finished row in the batch (writing padding) until the last
row of the batch stops, so a batch costs its longest answer times its size. Measured on the real
offline model (HumanEval, batch 16, 128 new tokens): answers average 45 tokens while the batch
ran all 128 steps, so about two thirds of the forward passes were spent on finished rows; the
forward pass was 99% of the CPU time. There is no ``generate`` option to shrink the batch, so
this loop does what ``generate`` does for greedy decoding (left-padded prefill, position ids
from the attention mask, one token a step from the key/value cache, argmax) and removes
finished rows from the cache (``DynamicCache.batch_select_indices``) and the mask.

It is used only where it is exactly greedy ``generate``: no logits processor is configured by
the model's generation config (repetition penalty, forced or suppressed tokens, beams...);
otherwise the engine calls ``generate``. tests/eval/test_eval_greedy.py compares the two
token for token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# generation-config fields that make generate() change the logits or the search: when any is
# set, greedy generate() is not argmax over the model's logits, and the engine uses it instead
_NEUTRAL = {"repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
            "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0),
            "bad_words_ids": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
            "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
            "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "sequence_bias": (None,),
            "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False),
            "guidance_scale": (None, 1.0), "num_beams": (None, 1), "penalty_alpha": (None,),
            "dola_layers": (None,), "watermarking_config": (None,), "logits_processor": (None,)}


def plain_greedy(generation_config) -> bool:
    """Whether greedy ``generate`` with this config is argmax over the raw logits."""
    return all(getattr(generation_config, k, None) in ok for k, ok in _NEUTRAL.items())


def _stopped(tail: str, text: str, stop: Sequence[str]) -> bool:
    """A stop string that ends inside the generated text (`tail`: the prompt's last tokens,
    so a stop string that starts in the prompt counts, as in generate's StopStringCriteria)."""
    joined = tail + text
    return any(s in joined[max(0, len(tail) - len(s) + 1):] for s in stop)


@torch.inference_mode()
def greedy_decode(model, tokenizer, ids: torch.Tensor, mask: torch.Tensor, max_new: int,
                  eos: Sequence[int], stop: Sequence[str] = (),
                  done: Callable[[str], bool] | None = None) -> list[list[int]]:
    """The generated token ids of each left-padded row, up to and including its eos token,
    the token that completes a stop string or the token after which `done(text)` holds, at
    most `max_new`."""
    from transformers import DynamicCache

    rows = ids.shape[0]
    out: list[list[int]] = [[] for _ in range(rows)]
    tails = [tokenizer.decode(r[-4:], skip_special_tokens=True) for r in ids.tolist()]
    active = list(range(rows))  # original row of each row still in the batch
    cache = DynamicCache(config=model.config)
    eos_set = set(eos)
    pos = mask.long().cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :]
    for step in range(max_new):
        nxt = logits.argmax(dim=-1)
        keep = []
        for j, tok in enumerate(nxt.tolist()):
            row = active[j]
            out[row].append(tok)
            finished = tok in eos_set or step + 1 == max_new
            if not finished and (stop or done):
                text = tokenizer.decode(out[row], skip_special_tokens=True)
                finished = bool(stop and _stopped(tails[row], text, stop)) or bool(done and done(text))
            if not finished:
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            mask, nxt = mask[index], nxt[index]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        logits = model(input_ids=nxt[:, None], attention_mask=mask,
                       position_ids=(mask.long().sum(-1, keepdim=True) - 1),
                       past_key_values=cache, use_cache=True).logits[:, -1, :]
    return out
