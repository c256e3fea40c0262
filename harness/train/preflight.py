"""Checks that run before any heavy work (model download, formatting, training), so a bad
setting fails in seconds with the cause and the fix instead of after an hour."""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError

METHODS = ("lora", "qlora")


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


def check_causal_lm(model_ref: str, model_cfg: DictConfig) -> None:
    """Refuse a model that is not a decoder-only causal LM, from its config alone."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_ref, revision=model_cfg.get("revision") or None)
    except (OSError, ValueError) as e:
        raise HarnessError(
            f"could not load the model config of {model_ref!r}: {e}. Fix: check model.name_or_path; "
            "without network access only local directories (or the hub cache) can be loaded."
        ) from e
    archs = config.architectures or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise HarnessError(
            f"{model_ref!r} is {archs or 'an unknown architecture'}, not a causal LM. Fix: point "
            "model.name_or_path at a decoder-only (…ForCausalLM) checkpoint."
        )


def preflight(cfg: DictConfig) -> tuple[str, str, list[str]]:
    """(backend, model reference, report_to list), or the first HarnessError."""
    from harness.models.load import resolve_model_path
    from harness.train.backends import select_backend

    backend = select_backend(cfg.train.backend)
    check_method(cfg.train.method)
    report_to = report_targets(cfg.train.report_to)
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    check_causal_lm(model_ref, cfg.model)
    return backend, model_ref, report_to
