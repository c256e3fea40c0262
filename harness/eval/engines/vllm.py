"""Generation with vLLM (GPU), when it is installed: the base model is loaded once and the
candidate is the same engine with the LoRA adapter applied per request, so base and candidate
share weights, batching and sampling code.

vLLM batches continuously: it is handed every prompt of a task at once and schedules them
itself (its own ``max_num_seqs``, settable through ``eval.vllm.llm_kwargs``), so the eval batch
size does not cap it. For a team, run vLLM as a server instead (``vllm serve`` with the adapters
as ``--lora-modules``, docs/gpu.md) and point ``eval.engine=openai`` at it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from harness.errors import HarnessError
from harness.eval.engines.base import GREEDY, Decoding, Generated, truncate_at_stop


def load_llm(model_ref: str, max_lora_rank: int, seed: int, **kwargs):
    """One vLLM engine for both models (LoRA enabled); a clear error when vLLM is missing."""
    try:
        from vllm import LLM
    except ImportError as e:
        raise HarnessError("eval.engine=vllm needs vLLM (pip install -e '.[vllm]', CUDA GPU). "
                           "Fix: install it, or use eval.engine=hf or eval.engine=openai.") from e
    return LLM(model=model_ref, enable_lora=True, max_lora_rank=max_lora_rank, seed=seed, **kwargs)


class VLLMEngine:
    name = "vllm"

    def __init__(self, llm, adapter: str | None, max_new_tokens: int):
        from vllm.lora.request import LoRARequest

        self.llm, self.adapter, self.max_new_tokens = llm, adapter, max_new_tokens
        self.lora = LoRARequest("candidate", 1, adapter) if adapter else None

    def generate(self, prompts: list[list[int]], stop: Sequence[str] = (),
                 max_new_tokens: int | None = None, eos_token_ids: Sequence[int] | None = None,
                 decoding: Decoding = GREEDY, desc: str = "generating",
                 done: Callable[[str], bool] | None = None) -> list[Generated]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(n=decoding.n, temperature=decoding.temperature,
                                top_p=decoding.top_p, seed=decoding.seed,
                                max_tokens=max_new_tokens or self.max_new_tokens,
                                stop=list(stop) or None,
                                stop_token_ids=list(eos_token_ids) if eos_token_ids else None)
        t0 = time.perf_counter()
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                 lora_request=self.lora, use_tqdm=True)
        share = (time.perf_counter() - t0) / max(1, len(prompts))
        return [Generated([truncate_at_stop(c.text, stop) for c in o.outputs], share)
                for o in outs]
