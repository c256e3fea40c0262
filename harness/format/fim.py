"""Fill-in-the-middle: sentinel tokens, hole sampling on line boundaries, and PSM / SPM
formatting. Shared by training (format stage) and the FIM eval, so both build holes and
prompts the same way.

Source text is tokenized with `split_special_tokens=True`: a file that contains the literal
string "<|fim_middle|>" (this repository does) must not inject a sentinel into the prompt.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from omegaconf import OmegaConf

from harness.errors import HarnessError

# Sentinel families in the order PSM uses them (prefix, suffix, middle), by model family.
KNOWN_SENTINELS = {
    "qwen2.5-coder": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    "deepseek-coder": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
}
ROLES = ("prefix", "suffix", "middle", "end")
# `model.fim: left_to_right`: the model has no sentinels (e.g. SmolLM2). Source files then train
# left to right only, and held-out holes are scored by continuing the prefix to the end of the
# next line (next-line completion), so the completion task still measures the same skill.
LEFT_TO_RIGHT = "left_to_right"


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


def _token_id(tokenizer, token: str | None) -> int | None:
    if not token:
        return None
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id else tid


def _detect(tokenizer) -> dict[str, str]:
    for names in KNOWN_SENTINELS.values():
        if all(_token_id(tokenizer, t) is not None for t in names):
            end = "<|endoftext|>" if _token_id(tokenizer, "<|endoftext|>") is not None else tokenizer.eos_token
            return dict(zip(ROLES, (*names, end), strict=True))
    raise HarnessError(
        "the tokenizer has none of the known FIM sentinel families "
        f"({', '.join(f'{k}: {v[0]}' for k, v in KNOWN_SENTINELS.items())}). Fix: set "
        "model.fim.{prefix,suffix,middle,end} to the model's own sentinels, or turn FIM off "
        "with data.format.fim_rate=0 for a model trained without it."
    )


def plain(fim_cfg) -> dict | str | None:
    """`model.fim` as plain data (None: detect; "left_to_right"; or the sentinel strings)."""
    return OmegaConf.to_container(fim_cfg, resolve=True) if OmegaConf.is_config(fim_cfg) else fim_cfg


def is_left_to_right(fim_cfg) -> bool:
    """True when `model.fim` says the model has no FIM sentinels."""
    return isinstance(fim_cfg, str) and fim_cfg == LEFT_TO_RIGHT


def fim_tokens(tokenizer, fim_cfg) -> FimTokens:
    """Resolve the configured sentinel strings to single token ids, detect them when `fim_cfg`
    is None, or refuse."""
    if isinstance(fim_cfg, str):
        raise HarnessError(
            f"model.fim={fim_cfg!r}: this model has no FIM sentinel tokens, so it cannot fill "
            "a hole between a prefix and a suffix (held-out completion is scored left to "
            "right instead). Fix: use a model with sentinels, or set model.fim to a mapping "
            "{prefix, suffix, middle, end} (null: detect).")
    names = _detect(tokenizer) if fim_cfg is None else {r: fim_cfg.get(r) for r in ROLES}
    ids = {}
    for role in ROLES:
        tid = _token_id(tokenizer, names[role])
        if tid is None:
            raise HarnessError(
                f"the tokenizer has no FIM {role} token {names[role]!r}. Fix: set model.fim.{role} "
                "to the model's own sentinel (e.g. <|fim_prefix|> for Qwen2.5-Coder, <fim_prefix> "
                "for StarCoder), set model.fim=null to detect them, or turn FIM off with "
                "data.format.fim_rate=0 for a model trained without it."
            )
        ids[role] = tid
    return FimTokens(**ids)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of source text, with special-token strings in it treated as plain text."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


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


def fim_prompt_ids(tokenizer, toks: FimTokens, prefix: str, suffix: str, budget: int,
                   spm: bool = False) -> list[int]:
    """The prompt the model continues with the middle, trimming far context to fit `budget`.

    PSM: `<pre>prefix<suf>suffix<mid>`. SPM (the StarCoder / Personal Copilot variant):
    `<pre><suf>suffix<mid>prefix`, so the middle directly continues the prefix.
    """
    pre, suf = encode(tokenizer, prefix), encode(tokenizer, suffix)
    room = max(0, budget - 3)
    keep_suf = min(len(suf), room // 2 if len(pre) > room // 2 else room - len(pre))
    keep_pre = min(len(pre), room - keep_suf)
    pre, suf = pre[len(pre) - keep_pre:], suf[:keep_suf]
    if spm:
        return [toks.prefix, toks.suffix, *suf, toks.middle, *pre]
    return [toks.prefix, *pre, toks.suffix, *suf, toks.middle]


def left_to_right_prompt_ids(tokenizer, prefix: str, budget: int) -> list[int]:
    """The prefix alone, cut from the left to `budget` tokens (the code nearest the hole is
    what matters; cutting from the right would remove the very line before it)."""
    ids = encode(tokenizer, prefix)
    return ids[len(ids) - min(len(ids), budget):]


def first_line(generation: str) -> str:
    """The first non-blank line of a left-to-right continuation: the predicted next line (a
    leading blank line is layout, not a prediction, and would score base models unfairly)."""
    return next((line for line in generation.split("\n") if line.strip()), "")


def has_first_line(generation: str) -> bool:
    """Whether `first_line` is settled: a non-blank line has ended. Decoding further cannot
    change the next-line answer, so the eval stops there (64 held-out holes on the offline model:
    161 -> 128 s at batch 64, 81 -> 76 s at batch 16)."""
    return any(line.strip() for line in generation.split("\n")[:-1])


def tokenize_fim(tokenizer, toks: FimTokens, hole: Hole, max_length: int,
                 spm: bool = False) -> dict | None:
    """Training example: the prompt, then the middle and the end token (the only loss).
    None when the middle alone does not fit `max_length`."""
    mid = [*encode(tokenizer, hole.middle), toks.end]
    if len(mid) >= max_length - 3:
        return None
    prompt = fim_prompt_ids(tokenizer, toks, hole.prefix, hole.suffix, max_length - len(mid), spm)
    return {"input_ids": prompt + mid, "assistant_masks": [0] * len(prompt) + [1] * len(mid)}


def tokenize_code(tokenizer, hole: Hole, max_length: int) -> dict | None:
    """Left-to-right example over the same window (the non-FIM share of `fim_rate`): every
    token is supervised, as in ordinary causal-LM training on code."""
    ids = encode(tokenizer, hole.prefix + hole.middle + hole.suffix)[:max_length]
    if len(ids) < 2:
        return None
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
