"""The training stage's own checks, run before any heavy work so a bad setting fails in
seconds with the cause and the fix: the backend and method, `report_to`, the model (path or hub
id, a causal LM) and the memory plan of one step (harness/train/vram.py).

harness/preflight.py runs them, with the rest of the run's checks, where a command starts; the
train stage calls `preflight(cfg.train, cfg.model, cfg.cache_dir)` again for what it needs (the
backend and the model reference).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

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


def check_memory(tcfg: DictConfig, backend: str, model_config) -> None:
    """Print the memory plan of one training step and refuse one that will not fit."""
    from harness.train import vram
    from harness.train.backends import compute_dtype, gradient_checkpointing

    m = memory_settings(tcfg)
    dtype_bytes = 2 if "16" in str(compute_dtype()) else 4
    try:
        shapes = vram.Shapes.from_config(model_config)
    except HarnessError:
        if m["check"]:
            raise
        log.warning("no memory plan: the model config has no Llama-style decoder shape")
        return
    p = vram.plan(shapes,
                  vram.setup_from_cfg(tcfg, backend, gradient_checkpointing(tcfg), dtype_bytes))
    device, total = vram.device_memory()
    if m["device_gb"]:
        device, total = f"train.memory.device_gb={m['device_gb']}", int(m["device_gb"] * vram.GIB)
    log.info("%s", p.table(device, int(total * m["headroom"])))
    if m["check"]:
        vram.check(p, device, total, m["headroom"])


def checkpoint_bytes(tcfg: DictConfig, model_config) -> int:
    """Disk a training run writes: `save_total_limit` checkpoints (adapter + optimizer states,
    a transient extra one while the oldest is rotated out) and the final adapter."""
    from harness.train import vram

    shapes = vram.Shapes.from_config(model_config)
    setup = vram.setup_from_cfg(tcfg, "hf", True, 4)
    adapter = vram.lora_params(shapes, setup) * 4
    kept = int(tcfg.get("save_total_limit") or 1) + 1
    return kept * adapter * 3 + adapter


def train_checks(tcfg: DictConfig, model_cfg: DictConfig,
                 cache_dir: str | Path) -> tuple[str, str, list[str], Any]:
    """(backend, model reference, report_to list, the model's config) for the train and model
    settings (`cache_dir`: where the tiny or converted model is kept), or the first
    HarnessError; on the unsloth backend, unsloth is imported before transformers."""
    from harness.models.load import resolve_model_path
    from harness.train.backends import import_unsloth_first, select_backend

    backend = select_backend(tcfg.backend)
    if backend == "unsloth":  # before anything below imports transformers
        import_unsloth_first()
    check_method(tcfg.method)
    report_to = report_targets(tcfg.report_to)
    model_ref = resolve_model_path(model_cfg, cache_dir)
    config = check_causal_lm(model_ref, model_cfg)
    check_memory(tcfg, backend, config)
    return backend, model_ref, report_to, config


def preflight(tcfg: DictConfig, model_cfg: DictConfig,
              cache_dir: str | Path) -> tuple[str, str, list[str]]:
    """(backend, model reference, report_to list), or the first HarnessError."""
    return train_checks(tcfg, model_cfg, cache_dir)[:3]
