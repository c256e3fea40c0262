"""Reading a judge's reply: the value (a 1-5 score, or A/B/tie), its rationale, and the
probability the judge gave each value where the endpoint returned logprobs.

JSON replies are parsed with json_repair against the rubric's schema: it takes the object out
of prose or code fences, mends trailing commas and quotes, coerces "4" to 4, and reports a
schema violation as a message the judge can be re-asked with. Choice replies are read with a
regex. The probabilities come from the top logprobs at the token that carries the value, so a
judge torn between 3 and 4 scores 3.5 rather than whichever digit won.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from dataclasses import dataclass

from harness.judge.rubric import KINDS

_DIGIT = re.compile(r"(?<![0-9])([1-5])(?![0-9])")  # "4", "Score: 4/5"; not the 1 of "10"
_LABEL = re.compile(r"\W*(?:response\s+)?(A|B|tie)\W*", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    value: str | None  # "1".."5" or "A" / "B" / "tie"; None when the reply could not be read
    rationale: str | None = None
    probs: dict[str, float] | None = None  # over the allowed values, renormalised
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def canonical(text: str, values: tuple[str, ...]) -> str | None:
    """`text` as one of `values` ("tie" matches any case, "a" matches "A"), else None."""
    text = text.strip().lower()
    return next((v for v in values if v.lower() == text), None)


def parse(reply: dict, kind: str, mode: str, schema: dict) -> Parsed:
    """Read one reply: {content, tokens, top} as the judge client returns it."""
    key, values = KINDS[kind]
    content = reply.get("content") or ""
    if mode == "json":
        value, rationale, error = _from_json(content, key, schema)
        offsets = [m.start(1) for m in re.finditer(rf'"{key}"\s*:\s*"?(\w+)', content)
                   if canonical(m.group(1), values) == value]
    else:
        rationale = None
        match = _DIGIT.search(content) if kind == "absolute" else _LABEL.fullmatch(content)
        value = canonical(match.group(1), values) if match else None
        error = None if value else f"expected exactly one of {', '.join(values)}"
        offsets = [match.start(1)] if value else []
    if value is None:
        return Parsed(None, rationale, None, error)
    return Parsed(value, rationale, _probs(reply, offsets[-1], values) if offsets else None)


def _from_json(content: str, key: str, schema: dict) -> tuple[str | None, str | None, str | None]:
    import json_repair

    try:
        obj = json_repair.loads(content, schema=schema)
    except (ValueError, TypeError, RecursionError) as e:
        return None, None, f"the reply is not a JSON object matching the schema ({e})"
    rationale = obj.get("rationale")
    return str(obj[key]), rationale if isinstance(rationale, str) else None, None


def _probs(reply: dict, offset: int, values: tuple[str, ...]) -> dict[str, float] | None:
    """Renormalised probabilities of `values` at the token covering character `offset`."""
    tokens, top = reply.get("tokens") or [], reply.get("top") or {}
    ends = list(itertools.accumulate(len(t) for t in tokens))
    i = bisect.bisect_right(ends, offset)  # the token whose text spans `offset`
    if i == len(tokens) or canonical(tokens[i], values) is None:  # absent, or shared with text
        return None
    mass: dict[str, float] = {}
    for token, logprob in top.get(str(i)) or []:
        value = canonical(token, values)
        if value is not None:
            mass[value] = mass.get(value, 0.0) + math.exp(logprob)
    total = sum(mass.values())
    return {v: p / total for v, p in mass.items()} if total > 0 else None


def expected_score(probs: dict[str, float] | None) -> float | None:
    """The probability-weighted 1-5 score."""
    return sum(int(v) * p for v, p in probs.items()) if probs else None
