"""`harness serve`: run the OpenAI-compatible server in the foreground until interrupted."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.models.load import resolve_model_path
from harness.serve.app import create_app

log = logging.getLogger(__name__)


def adapters_for(cfg: DictConfig, model_ref: str) -> dict[str, str]:
    """name -> adapter dir: `serve.adapters`, plus with `serve.registry` every live adapter of
    the registry (checked against its inference manifest)."""
    adapters = {name: str(Path(str(path)).expanduser().resolve())
                for name, path in OmegaConf.to_container(cfg.serve.adapters, resolve=True).items()}
    for name, path in adapters.items():
        if not (Path(path) / "adapter_config.json").exists():
            raise HarnessError(f"serve.adapters.{name}={path}: no PEFT adapter there (no "
                               f"adapter_config.json). Fix: point it at a run's train/adapter.")
    if cfg.serve.registry:
        from harness.registry.commands import live_adapters

        live = live_adapters(cfg.registry.dir, model_ref)
        if clash := sorted(set(live) & set(adapters)):
            raise HarnessError(f"{clash} are named both in serve.adapters and in the registry "
                               f"{cfg.registry.dir}. Fix: rename the serve.adapters entries.")
        adapters = {**live, **adapters}
    return adapters


def serve(cfg: DictConfig) -> None:
    s = cfg.serve
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    adapters = adapters_for(cfg, model_ref)
    app = create_app(model_ref, adapters=adapters, served_name=s.name,
                     fim=OmegaConf.to_container(cfg.model.fim, resolve=True),
                     postprocess=s.postprocess)
    log.info("serving %s at http://%s:%d/v1", [s.name, *adapters], s.host, s.port)
    uvicorn.run(app, host=s.host, port=s.port, log_level="info")
