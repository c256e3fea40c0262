"""Decoding settings and transformers batched generation, the same for base and candidate.

Every engine (this one, ``vllm_engine``, ``openai_engine``) takes token-id prompts (chat prompts
come from the chat template, FIM prompts carry the sentinel ids), returns ``Generated`` per
prompt (``n`` continuations and the prompt's share of the wall time), and cuts continuations at
stop strings afterwards the way bigcode-evaluation-harness does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from harness.errors import HarnessError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoding:
    """``n`` samples per prompt; temperature 0 is greedy (then ``n`` must be 1).

    bigcode-evaluation-harness reports greedy pass@1, or pass@1 at temperature 0.2 and
    pass@10/100 at 0.8 (top_p 0.95), with n samples and the unbiased estimator.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise HarnessError(f"bad decoding settings {self}: need n >= 1, temperature >= 0 and "
                               "0 < top_p <= 1 (eval.n_samples, eval.temperature, eval.top_p).")
        if self.greedy and self.n > 1:
            raise HarnessError(
                f"eval.n_samples={self.n} with eval.temperature=0: greedy decoding gives {self.n} "
                "identical samples. Fix: set eval.temperature (bigcode uses 0.2 for pass@1, 0.8 "
                "for pass@10/100) or eval.n_samples=1.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        return (f"sampling (temperature {self.temperature:g}, top_p {self.top_p:g}, "
                f"n {self.n}, seed {self.seed})")

    def as_dict(self) -> dict:
        return asdict(self)


GREEDY = Decoding()


@dataclass(frozen=True)
class Generated:
    outputs: list[str]  # `n` continuations, cut at the first stop string
    seconds: float  # this prompt's share of its batch's wall time


class Engine(Protocol):
    name: str

    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 decoding: Decoding = GREEDY, desc: str = "generating",
                 done: Callable[[str], bool] | None = None) -> list[Generated]:
        """`done`: a row may stop once `done(decoded text)` holds, where the caller reads only
        that much of it (next-line completion). An engine that cannot stop early on it (vLLM,
        an OpenAI server) ignores it and returns the longer text."""


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
