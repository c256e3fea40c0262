"""`harness serve`: run the OpenAI-compatible server in the foreground until interrupted."""

from __future__ import annotations

import logging

import uvicorn
from omegaconf import DictConfig, OmegaConf

from harness.models.load import resolve_model_path
from harness.serve.app import create_app

log = logging.getLogger(__name__)


def serve(cfg: DictConfig) -> None:
    s = cfg.serve
    adapters = {name: str(path) for name, path in OmegaConf.to_container(s.adapters, resolve=True).items()}
    app = create_app(resolve_model_path(cfg.model, cfg.cache_dir), adapters=adapters,
                     served_name=s.name, fim=OmegaConf.to_container(cfg.model.fim, resolve=True))
    log.info("serving %s at http://%s:%d/v1", [s.name, *adapters], s.host, s.port)
    uvicorn.run(app, host=s.host, port=s.port, log_level="info")
