"""Generation through any OpenAI-compatible completions endpoint (vLLM, TGI, llama.cpp, our
own ``harness serve``): the model under test is named per request, so base and candidate can
be two names on one server (e.g. vLLM's ``--lora-modules candidate=<adapter>``).

Prompts arrive as token ids like every engine's and are sent as their decoded text, special
tokens kept (FIM sentinels included), which servers tokenize back to the same ids. Requests
run ``concurrency`` at a time; the client retries 429/5xx/timeouts with backoff. Each sample
is its own request with seed ``decoding.seed + sample``, so base and candidate draw with the
same seeds and a server that does not batch-sample can still give n samples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import openai
from tqdm import tqdm

from harness.errors import HarnessError
from harness.eval.engines.base import GREEDY, Decoding, Generated, truncate_at_stop


class OpenAIEngine:
    name = "openai"

    def __init__(self, base_url: str, model: str, tokenizer, concurrency: int = 8,
                 max_new_tokens: int = 256, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, max_retries: int = 3, max_stop: int | None = None):
        self.base_url, self.model, self.tokenizer = base_url, model, tokenizer
        self.concurrency, self.max_new_tokens, self.max_stop = concurrency, max_new_tokens, max_stop
        # Local servers ignore the key; the client library insists on one.
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none",
                                    timeout=timeout_s, max_retries=max_retries)

    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 decoding: Decoding = GREEDY, desc: str = "generating",
                 done: Callable[[str], bool] | None = None) -> list[Generated]:
        """``eos_token_ids`` is not sent: servers stop at their own end tokens (FIM's too)."""
        texts = [self.tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
        # OpenAI's own API takes at most 4 stop strings; the rest are applied here afterwards.
        sent = list(stop)[: self.max_stop] if self.max_stop is not None else list(stop)
        jobs = [(i, s) for i in range(len(prompts)) for s in range(decoding.n)]

        def call(job: tuple[int, int]) -> tuple[str, float]:
            i, s = job
            t0 = time.perf_counter()
            try:
                reply = self.client.completions.create(
                    model=self.model, prompt=texts[i], max_tokens=max_new_tokens or self.max_new_tokens,
                    temperature=decoding.temperature, top_p=decoding.top_p,
                    seed=decoding.seed + s, stop=sent or None)
            except openai.APIError as e:
                raise HarnessError(
                    f"the completions endpoint {self.base_url} failed for model {self.model!r}: "
                    f"{e}. Fix: check eval.openai.base_url and that the server serves "
                    f"{self.model!r} (GET {self.base_url}/models).") from e
            return truncate_at_stop(reply.choices[0].text, stop), time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            done = list(tqdm(pool.map(call, jobs), total=len(jobs), desc=desc))
        results = []
        for i in range(len(prompts)):
            mine = done[i * decoding.n:(i + 1) * decoding.n]
            results.append(Generated([t for t, _ in mine], sum(s for _, s in mine)))
        return results
