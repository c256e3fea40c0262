"""One engine per model label, built from ``eval.engine`` with identical settings for both.

- ``hf``: transformers batched generation; the candidate is the base with the adapter merged.
  The model is loaded straight onto the GPU when there is one (``eval.device``, default auto);
  the device is recorded with the settings, and the preflight checks that ``eval.batch_size``
  fits its memory (harness/train/vram.py, ``generation_bytes``).
- ``vllm``: one vLLM engine; the candidate is the same engine with the LoRA applied per request.
  It is given every prompt at once and schedules them itself (``eval.batch_size`` does not cap it).
- ``openai``: any OpenAI-compatible completions endpoint (``eval.openai.base_url``, model names
  per label); with no base_url, a loopback ``harness serve`` app over the base model and the
  adapter is started for the duration, so the path works offline.

Engines are created on first use, so a resumed eval whose results are all on disk loads no
model, and ``release`` frees a label's model before the next one loads.
"""

from __future__ import annotations

import contextlib
import gc
import logging

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.eval.engines.base import Engine
from harness.eval.engines.hf import HFEngine
from harness.models.load import load_model

log = logging.getLogger(__name__)
ENGINES = ("hf", "vllm", "openai")


def eval_device(e: DictConfig) -> str:
    """``eval.device`` if set, else ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    device = e.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"eval.device={device} but no CUDA GPU is visible. Fix: "
                           "eval.device=cpu (or null to detect).")
    return str(device)


def placement(device: str) -> dict:
    """``from_pretrained`` arguments that load the weights straight onto ``device`` (through
    accelerate's device_map, so a 7B model never sits in host RAM first); none for the CPU."""
    if device == "cpu":
        return {}
    return {"device_map": {"": device if ":" in device else f"{device}:0"}}


def engine_settings(e: DictConfig) -> dict:
    """What both models share, for metrics.json (known before any engine exists)."""
    if e.engine not in ENGINES:
        raise HarnessError(f"eval.engine={e.engine!r}: expected one of {ENGINES}.")
    settings = {"engine": e.engine, "batch_size": e.batch_size, "max_new_tokens": e.max_new_tokens}
    if e.engine == "hf":
        settings["device"] = eval_device(e)
    if e.engine == "vllm":
        settings["batch_size"] = "all prompts at once (vLLM schedules them)"
    if e.engine == "openai":
        settings.update(base_url=e.openai.base_url or "loopback harness serve",
                        models=OmegaConf.to_container(e.openai.models), max_stop=e.openai.max_stop)
    return settings


class EnginePool(contextlib.AbstractContextManager):
    """The engines of both labels for one eval (the eval settings `ecfg`; the model settings
    `model_cfg` for loading the base and its FIM tokens), and whatever they hold (a loopback
    server)."""

    def __init__(self, ecfg: DictConfig, model_cfg: DictConfig, model_ref: str, adapter: str,
                 tokenizer):
        self.e, self.model_cfg = ecfg, model_cfg
        self.model_ref, self.adapter, self.tokenizer = model_ref, adapter, tokenizer
        self._engines: dict[str, Engine] = {}
        self._stack = contextlib.ExitStack()
        self._llm = None
        self._base_url: str | None = None
        engine_settings(self.e)  # validate before any work

    def get(self, label: str) -> Engine:
        if label not in self._engines:
            self._engines[label] = self._make(label)
        return self._engines[label]

    def lazy(self, label: str) -> Engine:
        """`label`'s engine, created when it first generates (not at all if nothing is to do)."""
        return _Lazy(self, label)

    def release(self, label: str) -> None:
        """Free `label`'s weights (hf loads one model per label)."""
        if self._engines.pop(label, None) is not None:
            gc.collect()

    def __exit__(self, *exc_info) -> None:
        self._engines.clear()
        self._llm = None
        self._stack.close()
        gc.collect()

    def _make(self, label: str) -> Engine:
        e, adapter = self.e, (self.adapter if label == "candidate" else None)
        log.info("eval: %s engine for the %s model", e.engine, label)
        if e.engine == "hf":
            device = eval_device(e)
            model = load_model(self.model_ref, self.model_cfg, adapter=adapter, **placement(device))
            log.info("eval: %s model on %s, batch size %d", label, model.device, e.batch_size)
            return HFEngine(model, self.tokenizer, e.batch_size, e.max_new_tokens)
        if e.engine == "vllm":
            from harness.eval.engines.vllm import VLLMEngine, load_llm

            if self._llm is None:
                self._llm = load_llm(self.model_ref, e.vllm.max_lora_rank, e.seed,
                                     **OmegaConf.to_container(e.vllm.llm_kwargs or {}))
            return VLLMEngine(self._llm, adapter, e.max_new_tokens)
        from harness.eval.engines.openai import OpenAIEngine

        o = e.openai
        return OpenAIEngine(self._endpoint(), o.models[label], self.tokenizer,
                            concurrency=e.batch_size, max_new_tokens=e.max_new_tokens,
                            api_key_env=o.api_key_env, timeout_s=o.timeout_s,
                            max_retries=o.max_retries, max_stop=o.max_stop)

    def _endpoint(self) -> str:
        """The configured base URL, or a loopback server started once for both labels."""
        if self.e.openai.base_url:
            return str(self.e.openai.base_url)
        if self._base_url is None:
            from harness.format.fim import plain
            from harness.serve.app import ServerThread, create_app

            models = self.e.openai.models
            app = create_app(self.model_ref, adapters={models.candidate: self.adapter},
                             served_name=models.base, fim=plain(self.model_cfg.get("fim")))
            server = self._stack.enter_context(ServerThread(app))
            self._base_url = server.base_url
            log.info("eval: loopback completions server (base + adapter) at %s", self._base_url)
        return self._base_url


class _Lazy:
    """Stands in for a label's engine until it first generates."""

    def __init__(self, pool: EnginePool, label: str):
        self.pool, self.label, self.name = pool, label, pool.e.engine

    def generate(self, *args, **kwargs):
        return self.pool.get(self.label).generate(*args, **kwargs)
