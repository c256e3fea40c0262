"""FIM completion on held-out holes: lines that test-split commits added, never trained on.

With sentinels the model fills the hole between prefix and suffix; a model without them
(`model.fim: left_to_right`) gets single-line holes and continues the prefix, and its first
non-blank line is scored (next-line completion).

The holes depend only on the mined records and the seed, so base and candidate are asked to
fill exactly the same holes with exactly the same prompts.
"""

from __future__ import annotations

import difflib
import random

from harness.format.fim import (
    FimTokens,
    Hole,
    fim_prompt_ids,
    first_line,
    left_to_right_prompt_ids,
    sample_holes,
)


def held_out_holes(records: list[dict], n: int, max_middle_lines: int, context_lines: int,
                   seed: int) -> list[tuple[str, Hole]]:
    """(item id, hole) pairs, one per file at a time round-robin until `n` are picked."""
    per_file = []
    for r in sorted(records, key=lambda r: r["id"]):
        rng = random.Random(f"{seed}:{r['id']}")
        holes = sample_holes(r["content"], rng, n, max_middle_lines, context_lines,
                             allowed_lines=r.get("added_lines"))
        rng.shuffle(holes)
        per_file.append([(f"{r['path']}@{r['shas'][0][:12]}:{h.line}", h) for h in holes])
    picked: list[tuple[str, Hole]] = []
    while len(picked) < n and any(per_file):
        for holes in per_file:
            if holes and len(picked) < n:
                picked.append(holes.pop())
    return picked


def prompts(tokenizer, toks: FimTokens | None, holes: list[tuple[str, Hole]],
            budget: int) -> list[list[int]]:
    """FIM prompts with the model's sentinels, or (`toks` None: no sentinels) the prefix alone."""
    if toks is None:
        return [left_to_right_prompt_ids(tokenizer, h.prefix, budget) for _, h in holes]
    return [fim_prompt_ids(tokenizer, toks, h.prefix, h.suffix, budget) for _, h in holes]


def answer(generation: str, toks: FimTokens | None) -> str:
    """What is scored: the middle the model wrote, or left to right its next line."""
    return generation if toks is not None else first_line(generation)


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip()


def score(expected: str, output: str) -> dict:
    """Exact match and first-line exact match (whitespace-normalised), and edit similarity."""
    e, o = _norm(expected), _norm(output)
    return {
        "exact_match": float(e == o),
        "first_line_exact_match": float(e.split("\n")[0].strip() == o.split("\n")[0].strip()),
        "edit_similarity": difflib.SequenceMatcher(None, e, o).ratio(),
    }
