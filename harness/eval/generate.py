"""Batched greedy generation with transformers, the same for base and candidate.

Prompts are token-id lists (chat prompts come from the chat template, FIM prompts carry the
sentinel ids), sorted by length to cut padding, left-padded, and truncated at stop strings
afterwards the way bigcode-evaluation-harness does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class HFEngine:
    """Greedy decoding with a fixed batch size; settings are recorded with every result."""

    def __init__(self, model, tokenizer, batch_size: int = 8, max_new_tokens: int = 256):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    @property
    def settings(self) -> dict:
        return {"engine": "hf", "decoding": "greedy", "batch_size": self.batch_size,
                "max_new_tokens": self.max_new_tokens, "dtype": str(self.model.dtype)}

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 desc: str = "generating") -> list[str]:
        """Decoded continuations (special tokens dropped), cut at the first stop string."""
        max_new = max_new_tokens or self.max_new_tokens
        pad = self.tokenizer.pad_token_id
        eos = list(eos_token_ids) if eos_token_ids else self.model.generation_config.eos_token_id
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs: list[str] = [""] * len(prompts)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch"):
            idx = order[start:start + self.batch_size]
            batch = [prompts[i] for i in idx]
            if limit:  # keep the most recent context when a prompt is too long
                batch = [p[-(limit - max_new):] for p in batch]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
            gen = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=max_new, do_sample=False, pad_token_id=pad, eos_token_id=eos,
                stop_strings=list(stop) or None, tokenizer=self.tokenizer if stop else None,
            )
            for i, row in zip(idx, gen[:, width:].tolist(), strict=True):
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                outputs[i] = truncate_at_stop(text, stop)
        return outputs
