"""Resolve the configured base model to a local directory and load it with its tokenizer.

`model.name_or_path: null` means the offline tiny model (built and cached on first use), or,
with `model.gguf` set, a GGUF checkpoint converted once to a cached directory (the offline real
model); a hub id or a path is loaded with `transformers`. Paths are always made absolute, because PEFT
stores `base_model_name_or_path` exactly as passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError


def resolve_model_path(model_cfg: DictConfig, cache_dir: str | Path) -> str:
    """The base model as a loadable reference: an absolute local path or a hub id."""
    if model_cfg.get("gguf") and not model_cfg.get("name_or_path"):
        from harness.models.gguf_import import convert

        return str(convert(model_cfg.gguf, cache_dir))
    name = model_cfg.get("name_or_path")
    if not name:
        from harness.models.tiny import build_tiny_model

        tiny = OmegaConf.to_container(model_cfg.get("tiny") or {}, resolve=True)
        return str(build_tiny_model(cache_dir, **tiny))
    path = Path(str(name)).expanduser()
    looks_like_path = str(name).startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        if not (path / "config.json").exists():
            raise HarnessError(
                f"model.name_or_path={name!r}: no model there (expected a directory with "
                f"config.json). Fix: point it at a saved Hugging Face model directory, a hub id, "
                f"or set model=tiny for the offline model."
            )
        return str(path.resolve())
    return str(name)


def model_id(model_cfg: DictConfig) -> str:
    """What manifests and reports call the base model: its hub id or path, the GGUF file it
    was converted from (package/file), or `tiny` for the built test model."""
    if name := model_cfg.get("name_or_path"):
        return str(name)
    if gguf := model_cfg.get("gguf"):
        return "/".join(str(p) for p in (gguf.get("package"), gguf.get("file")) if p)
    return "tiny"


def load_tokenizer(model_ref: str, model_cfg: DictConfig | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_ref, revision=_revision(model_cfg))
    except OSError as e:
        raise HarnessError(
            f"could not load the tokenizer of {model_ref!r}: {e}. Fix: check the id/path; without "
            f"network access only local directories (or the hub cache) can be loaded."
        ) from e
    template = model_cfg.get("chat_template") if model_cfg is not None else None
    if template:
        tok.chat_template = str(template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_ref: str, model_cfg: DictConfig | None = None, adapter: str | None = None,
               merge: bool = True, **kwargs: Any):
    """Load a causal LM (optionally with a PEFT adapter, merged for fast inference)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_ref, revision=_revision(model_cfg))
    except OSError as e:
        raise HarnessError(f"could not load the config of {model_ref!r}: {e}") from e
    if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
        raise HarnessError(
            f"{model_ref!r} is a {config.architectures} model, not a causal LM. Fix: point "
            f"model.name_or_path at a decoder-only (…ForCausalLM) checkpoint."
        )
    dtype = (model_cfg.get("dtype") if model_cfg is not None else None) or "float32"
    model = AutoModelForCausalLM.from_pretrained(
        model_ref, revision=_revision(model_cfg), dtype=getattr(torch, str(dtype)), **kwargs
    )
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model


def _revision(model_cfg: DictConfig | None) -> str | None:
    return (model_cfg.get("revision") if model_cfg is not None else None) or None


def check_causal_lm(model_ref: str, model_cfg: DictConfig):
    """The model's config, or an error when it cannot be found or is not a decoder-only LM."""
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
    return config
