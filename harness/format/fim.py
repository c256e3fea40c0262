"""Fill-in-the-middle: hole sampling on line boundaries, and PSM formatting with the model's
own sentinel tokens. Shared by training (format stage) and the FIM eval, so both build holes
and prompts the same way."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class FimTokens:
    prefix: int
    suffix: int
    middle: int
    end: int


@dataclass(frozen=True)
class Hole:
    prefix: str
    middle: str
    suffix: str
    line: int  # 1-based first line of the middle


def fim_tokens(tokenizer, fim_cfg) -> FimTokens:
    """Resolve the configured sentinel strings to single token ids, or refuse."""
    ids = {}
    for role in ("prefix", "suffix", "middle", "end"):
        tok = fim_cfg.get(role) if fim_cfg is not None else None
        tid = tokenizer.convert_tokens_to_ids(tok) if tok else None
        if tid is None or tid == tokenizer.unk_token_id:
            raise HarnessError(
                f"the tokenizer has no FIM {role} token {tok!r}. Fix: set model.fim.{role} to the "
                "model's own sentinel (e.g. <|fim_prefix|> for Qwen2.5-Coder, <fim_prefix> for "
                "StarCoder), or disable FIM for models trained without it."
            )
        ids[role] = tid
    return FimTokens(**ids)


def sample_holes(content: str, rng: random.Random, n: int, max_middle_lines: int,
                 context_lines: int, allowed_lines: Iterable[int] | None = None) -> list[Hole]:
    """Up to `n` distinct holes of 1..max_middle_lines whole, non-blank lines.

    `allowed_lines` (1-based) restricts where holes may start and end, e.g. to the lines a
    held-out commit added.
    """
    lines = content.splitlines(keepends=True)
    allowed = set(allowed_lines) if allowed_lines is not None else set(range(1, len(lines) + 1))
    starts = sorted(i for i in range(len(lines)) if i + 1 in allowed and lines[i].strip())
    rng.shuffle(starts)
    holes = []
    for i in starts[:n]:
        k = 1
        want = rng.randint(1, max_middle_lines)
        while k < want and i + k < len(lines) and i + k + 1 in allowed:
            k += 1
        holes.append(Hole(prefix="".join(lines[max(0, i - context_lines):i]),
                          middle="".join(lines[i:i + k]),
                          suffix="".join(lines[i + k:i + k + context_lines]), line=i + 1))
    return sorted(holes, key=lambda h: h.line)


def fim_prompt_ids(tokenizer, toks: FimTokens, prefix: str, suffix: str, budget: int) -> list[int]:
    """PSM prompt `<pre>prefix<suf>suffix<mid>`, trimming far context to fit `budget` tokens."""
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    suf = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    room = max(0, budget - 3)
    keep_suf = min(len(suf), room // 2 if len(pre) > room // 2 else room - len(pre))
    keep_pre = min(len(pre), room - keep_suf)
    return [toks.prefix, *pre[len(pre) - keep_pre:], toks.suffix, *suf[:keep_suf], toks.middle]


def tokenize_fim(tokenizer, toks: FimTokens, hole: Hole, max_length: int) -> dict | None:
    """Training example: the PSM prompt, then the middle and the end token (the only loss)."""
    mid = tokenizer(hole.middle, add_special_tokens=False)["input_ids"] + [toks.end]
    if len(mid) >= max_length - 3:
        return None
    prompt = fim_prompt_ids(tokenizer, toks, hole.prefix, hole.suffix, max_length - len(mid))
    return {"input_ids": prompt + mid, "assistant_masks": [0] * len(prompt) + [1] * len(mid)}
