"""transformers batched generation: the default engine, the same for base and candidate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch
from tqdm import tqdm

from harness.eval.engines.base import GREEDY, Decoding, Generated, truncate_at_stop
from harness.eval.engines.greedy import greedy_decode, plain_greedy
from harness.malloc import keep_freed_memory

log = logging.getLogger(__name__)


class HFEngine:
    """transformers ``generate`` with a fixed batch size; settings are recorded with results."""

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_new_tokens: int = 256):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        if model.device.type == "cpu":
            keep_freed_memory()

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 decoding: Decoding = GREEDY, desc: str = "generating",
                 done: Callable[[str], bool] | None = None) -> list[Generated]:
        """Decoded continuations (special tokens dropped), cut at the first stop string.

        Prompts are sorted by length to cut padding and left-padded. Greedy decoding drops a
        row from the batch once it is done (greedy.py), where that is exactly what greedy
        ``generate`` computes; otherwise ``generate`` runs. Sampling reseeds torch per batch
        (seed + batch start), so a rerun draws the same samples.
        """
        max_new = max_new_tokens or self.max_new_tokens
        pad = self.tokenizer.pad_token_id
        eos = list(eos_token_ids) if eos_token_ids else self.model.generation_config.eos_token_id
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generated | None] = [None] * len(prompts)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        shrink = decoding.greedy and plain_greedy(self.model.generation_config)
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
            ids, mask = ids.to(self.model.device), mask.to(self.model.device)
            if shrink:
                rows = greedy_decode(self.model, self.tokenizer, ids, mask, max_new,
                                     [] if eos is None else [eos] if isinstance(eos, int) else eos, stop,
                                     done)
            else:
                rows = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new, pad_token_id=pad,
                    eos_token_id=eos, stop_strings=list(stop) or None,
                    tokenizer=self.tokenizer if stop else None, **sampling)[:, width:].tolist()
            texts = [truncate_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), stop)
                     for row in rows]
            share = (time.perf_counter() - t0) / len(idx)
            for j, i in enumerate(idx):  # generate() returns each prompt's n rows together
                results[i] = Generated(texts[j * decoding.n:(j + 1) * decoding.n], share)
        return results  # type: ignore[return-value]
