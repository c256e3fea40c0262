"""Decoding settings and transformers batched generation, the same for base and candidate.

Every engine (this one, ``vllm_engine``, ``openai_engine``) takes token-id prompts (chat prompts
come from the chat template, FIM prompts carry the sentinel ids), returns ``Generated`` per
prompt (``n`` continuations and the prompt's share of the wall time), and cuts continuations at
stop strings afterwards the way bigcode-evaluation-harness does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from tqdm import tqdm

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
                 decoding: Decoding = GREEDY, desc: str = "generating") -> list[Generated]: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class HFEngine:
    """transformers ``generate`` with a fixed batch size; settings are recorded with results."""

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_new_tokens: int = 256):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 decoding: Decoding = GREEDY, desc: str = "generating") -> list[Generated]:
        """Decoded continuations (special tokens dropped), cut at the first stop string.

        Prompts are sorted by length to cut padding and left-padded. Sampling reseeds torch
        per batch (seed + batch start), so a rerun draws the same samples.
        """
        max_new = max_new_tokens or self.max_new_tokens
        pad = self.tokenizer.pad_token_id
        eos = list(eos_token_ids) if eos_token_ids else self.model.generation_config.eos_token_id
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generated | None] = [None] * len(prompts)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        sampling = ({"do_sample": True, "temperature": decoding.temperature,
                     "top_p": decoding.top_p, "num_return_sequences": decoding.n}
                    if not decoding.greedy else {"do_sample": False})
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch"):
            t0 = time.perf_counter()
            idx = order[start:start + self.batch_size]
            batch = [prompts[i] for i in idx]
            if limit:  # keep the most recent context when a prompt is too long
                batch = [p[-(limit - max_new):] for p in batch]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
            if not decoding.greedy:
                torch.manual_seed(decoding.seed + start)
            gen = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=max_new, pad_token_id=pad, eos_token_id=eos,
                stop_strings=list(stop) or None, tokenizer=self.tokenizer if stop else None,
                **sampling)
            texts = [truncate_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), stop)
                     for row in gen[:, width:].tolist()]
            share = (time.perf_counter() - t0) / len(idx)
            for j, i in enumerate(idx):  # generate() returns each prompt's n rows together
                results[i] = Generated(texts[j * decoding.n:(j + 1) * decoding.n], share)
        return results  # type: ignore[return-value]
