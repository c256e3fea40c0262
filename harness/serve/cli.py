"""`harness serve`: run the OpenAI-compatible server in the foreground until interrupted."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import uvicorn
from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.format.fim import plain
from harness.models.load import resolve_model_path
from harness.serve.app import Limits, create_app
from harness.serve.guard import check_bind

log = logging.getLogger(__name__)


def adapters_for(scfg: DictConfig, registry_cfg: DictConfig, model_ref: str) -> dict[str, str]:
    """name -> adapter dir: `serve.adapters` (of the serve settings `scfg`), plus with
    `serve.registry` every live adapter of the registry in `registry_cfg.dir` (checked against
    its inference manifest)."""
    adapters = {name: str(Path(str(path)).expanduser().resolve())
                for name, path in OmegaConf.to_container(scfg.adapters, resolve=True).items()}
    for name, path in adapters.items():
        if not (Path(path) / "adapter_config.json").exists():
            raise HarnessError(f"serve.adapters.{name}={path}: no PEFT adapter there (no "
                               f"adapter_config.json). Fix: point it at a run's train/adapter.")
    if scfg.registry:
        from harness.registry.commands import live_adapters

        live = live_adapters(registry_cfg.dir, model_ref)
        if clash := sorted(set(live) & set(adapters)):
            raise HarnessError(f"{clash} are named both in serve.adapters and in the registry "
                               f"{registry_cfg.dir}. Fix: rename the serve.adapters entries.")
        adapters = {**live, **adapters}
    return adapters


def limits_for(scfg: DictConfig) -> Limits:
    """The request limits of the serve settings."""
    return Limits(**{f.name: scfg[f.name] for f in dataclasses.fields(Limits)})


def serve(cfg: DictConfig) -> None:
    """Check the settings and where it will listen, then load the model and serve."""
    s = cfg.serve
    limits = limits_for(s)
    port = s.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise HarnessError(f"serve.port={port!r} must be a port number (0-65535). Fix: "
                           f"serve.port=8000.")
    if not isinstance(s.allow_unauthenticated, bool):
        raise HarnessError(f"serve.allow_unauthenticated={s.allow_unauthenticated!r} must be "
                           f"true or false.")
    api_key = os.environ.get(s.api_key_env) if s.api_key_env else None
    check_bind(str(s.host), s.api_key_env, api_key, bool(s.allow_unauthenticated))
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    adapters = adapters_for(s, cfg.registry, model_ref)
    app = create_app(model_ref, adapters=adapters, served_name=s.name,
                     fim=plain(cfg.model.get("fim")),
                     postprocess=s.postprocess, limits=limits, api_key=api_key)
    log.info("serving %s at http://%s:%d/v1 (%s)", [s.name, *adapters], s.host, s.port,
             f"key from ${s.api_key_env}" if api_key else "no key")
    uvicorn.run(app, host=s.host, port=port, log_level="info")
