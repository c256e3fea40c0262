"""Checks that run before any heavy work (mining, model download, training, eval), so a bad
setting fails in seconds with the cause and the fix instead of after a weekend of training:
the training backend and method, the model (path or hub id, a causal LM), the memory plan
(harness/train/vram.py), disk space for checkpoints, and for the eval the judge (its rubric,
its API key, and that its endpoint answers `/models` and serves the configured model).

`check_run(cfg, stages)` is called once where a command starts (harness/cli.py); the train
stage calls `preflight(cfg)` again for what it needs (the backend and the model reference).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.models.load import check_causal_lm

log = logging.getLogger(__name__)
METHODS = ("lora", "qlora")
MEMORY_DEFAULTS = {"check": True, "device_gb": None, "headroom": 0.9}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise HarnessError(f"train.method={method!r}: expected one of {METHODS}.")
    if method == "qlora":
        try:
            importlib.import_module("bitsandbytes")
        except ImportError as e:
            raise HarnessError(
                f"train.method=qlora needs bitsandbytes, which cannot be imported ({e}). Fix: "
                "pip install bitsandbytes, or use train.method=lora."
            ) from e


def report_targets(report_to: Any) -> list[str]:
    """`train.report_to` as the list transformers expects, every integration checked."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = OmegaConf.to_container(report_to) if OmegaConf.is_list(report_to) else [report_to]
    names = [str(n) for n in names if n not in (None, "none")]
    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise HarnessError(f"train.report_to={name!r}: expected none or one of "
                               f"{sorted(INTEGRATION_TO_CALLBACK)}.")
        if name not in available:
            raise HarnessError(f"train.report_to={name} needs the {name} package, which is not "
                               f"installed. Fix: pip install {name}, or train.report_to=none.")
    return names


def memory_settings(tcfg: DictConfig) -> dict:
    return {**MEMORY_DEFAULTS, **OmegaConf.to_container(tcfg.get("memory") or OmegaConf.create())}


def check_memory(cfg: DictConfig, backend: str, model_config) -> None:
    """Print the memory plan of one training step and refuse one that will not fit."""
    from harness.train import vram
    from harness.train.backends import compute_dtype, gradient_checkpointing

    m = memory_settings(cfg.train)
    dtype_bytes = 2 if "16" in str(compute_dtype()) else 4
    try:
        shapes = vram.Shapes.from_config(model_config)
    except HarnessError:
        if m["check"]:
            raise
        log.warning("no memory plan: the model config has no Llama-style decoder shape")
        return
    p = vram.plan(shapes,
                  vram.setup_from_cfg(cfg, backend, gradient_checkpointing(cfg.train), dtype_bytes))
    device, total = vram.device_memory()
    if m["device_gb"]:
        device, total = f"train.memory.device_gb={m['device_gb']}", int(m["device_gb"] * vram.GIB)
    log.info("%s", p.table(device, int(total * m["headroom"])))
    if m["check"]:
        vram.check(p, device, total, m["headroom"])


def checkpoint_bytes(cfg: DictConfig, model_config) -> int:
    """Disk a training run writes: `save_total_limit` checkpoints (adapter + optimizer states,
    a transient extra one while the oldest is rotated out) and the final adapter."""
    from harness.train import vram

    shapes = vram.Shapes.from_config(model_config)
    setup = vram.setup_from_cfg(cfg, "hf", True, 4)
    adapter = vram.lora_params(shapes, setup) * 4
    kept = int(cfg.train.get("save_total_limit") or 1) + 1
    return kept * adapter * 3 + adapter


def check_disk(path: str | Path, need: int, what: str) -> None:
    """Refuse when the filesystem holding `path` has less than `need` bytes free."""
    probe = Path(path).expanduser().resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise HarnessError(
            f"not enough disk for {what}: {need / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB "
            f"free on {probe}. Fix: free space there, point run_dir (or run_name) at a larger "
            f"disk, or lower train.save_total_limit.")


def _hosted(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return url.startswith("https://") and host not in ("localhost", "127.0.0.1", "::1")


def check_endpoint(base_url: str, api_key_env: str, models: list[str], what: str,
                   timeout_s: float = 10.0) -> None:
    """The key is exported where a hosted endpoint needs one, the endpoint answers
    `GET /models`, and it serves every model named in `models`."""
    import openai

    key = os.environ.get(api_key_env)
    if not key and _hosted(base_url):
        raise HarnessError(f"{what} at {base_url} needs an API key, and ${api_key_env} is not "
                           f"set. Fix: export {api_key_env}=<your key> (or set the "
                           f"api_key_env setting to the variable that holds it).")
    client = openai.OpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=timeout_s,
                           max_retries=0)
    try:
        served = {m.id for m in client.models.list()}
    except openai.AuthenticationError as e:
        raise HarnessError(f"{what} at {base_url} refused the key in ${api_key_env} ({e}). "
                           f"Fix: export a valid key.") from e
    except openai.APIError as e:
        raise HarnessError(f"{what} at {base_url} does not answer GET /models ({e}). Fix: start "
                           f"the server (or check the URL; it usually ends in /v1).") from e
    missing = [m for m in models if m not in served]
    if missing and served:
        raise HarnessError(f"{what} at {base_url} does not serve {missing}; it serves "
                           f"{sorted(served)[:10]}. Fix: set the model name to a served one.")


def check_judge(cfg: DictConfig) -> None:
    from harness.judge.rubric import load_rubric
    from harness.paths import project_path

    j = cfg.judge
    load_rubric(project_path(j.rubric))
    if j.base_url:
        check_endpoint(str(j.base_url), str(j.api_key_env), [str(j.model)],
                       "the judge (judge.base_url)")


def check_eval_memory(cfg: DictConfig, model_config) -> None:
    """On a GPU, `eval.batch_size` sequences (times the samples per prompt) of
    `data.format.max_length` tokens (prompts are cut to leave room for the new tokens) must fit
    beside the weights."""
    from harness.eval.engines.pool import eval_device
    from harness.train import vram

    e = cfg.eval
    device = eval_device(e)
    if e.engine != "hf" or device == "cpu" or not memory_settings(cfg.train)["check"]:
        return
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    tokens = int(cfg.data.format.max_length)
    dtype_bytes = 4 if str(cfg.model.get("dtype") or "float32") == "float32" else 2
    vram.check_generation(vram.Shapes.from_config(model_config), int(e.batch_size) * int(e.n_samples),
                          tokens, dtype_bytes, props.name, int(props.total_memory))


def check_eval_engine(cfg: DictConfig) -> None:
    e = cfg.eval
    if e.engine == "openai" and e.openai.base_url:
        check_endpoint(str(e.openai.base_url), str(e.openai.api_key_env),
                       [str(v) for v in e.openai.models.values()],
                       "the eval endpoint (eval.openai.base_url)")
    if e.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise HarnessError("eval.engine=vllm needs vLLM. Fix: pip install -e '.[vllm]' on a "
                           "CUDA machine, or use eval.engine=hf.")


def _train_checks(cfg: DictConfig):
    from harness.models.load import resolve_model_path
    from harness.train.backends import import_unsloth_first, select_backend

    backend = select_backend(cfg.train.backend)
    if backend == "unsloth":  # before anything below imports transformers
        import_unsloth_first()
    check_method(cfg.train.method)
    report_to = report_targets(cfg.train.report_to)
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    config = check_causal_lm(model_ref, cfg.model)
    check_memory(cfg, backend, config)
    return backend, model_ref, report_to, config


def preflight(cfg: DictConfig) -> tuple[str, str, list[str]]:
    """(backend, model reference, report_to list), or the first HarnessError."""
    return _train_checks(cfg)[:3]


def pending(cfg: DictConfig, stages: tuple[str, ...] | list[str]) -> list[str]:
    """The stages a command will run: those named, and the upstream ones not yet finished."""
    from harness.rundir import is_finished
    from harness.stages import UPSTREAM, stage_dir

    todo: list[str] = []
    for name in stages:
        chain, up = [name], UPSTREAM.get(name)
        while up and not is_finished(stage_dir(cfg, up)):
            chain.insert(0, up)
            up = UPSTREAM.get(up)
        todo += [s for s in chain if s not in todo]
    return todo


def check_run(cfg: DictConfig, stages: tuple[str, ...] | list[str]) -> None:
    """Everything the stages this command runs will need, checked before the first of them."""
    todo, config = pending(cfg, stages), None
    if "train" in todo:
        config = _train_checks(cfg)[3]
        check_disk(cfg.run_dir, checkpoint_bytes(cfg, config), "the training checkpoints")
    elif {"format", "eval"} & set(todo):
        from harness.models.load import resolve_model_path

        config = check_causal_lm(resolve_model_path(cfg.model, cfg.cache_dir), cfg.model)
    if "eval" in todo:
        check_eval_engine(cfg)
        check_eval_memory(cfg, config)
        if cfg.eval.judge.enabled:
            check_judge(cfg)
    log.info("preflight: %s ready", ", ".join(todo) or "nothing to run")
