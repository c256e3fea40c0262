"""Thresholds are declared before eval: the eval stage freezes `conf/gate` into the run dir,
with its hash and time, and the gate judges with that frozen copy only."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.io import atomic_write_json, read_json, stable_hash

log = logging.getLogger(__name__)


def thresholds_path(cfg: DictConfig) -> Path:
    return Path(cfg.run_dir) / "thresholds.json"


def current(cfg: DictConfig) -> dict:
    gate = OmegaConf.to_container(cfg.gate, resolve=True)
    return {"gate": gate, "sha256": stable_hash(gate)}


def freeze_thresholds(cfg: DictConfig) -> dict:
    """Write the thresholds once per run; later calls keep the first copy."""
    path = thresholds_path(cfg)
    if path.exists():
        return read_json(path)
    frozen = {**current(cfg), "frozen_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    atomic_write_json(path, frozen)
    log.info("gate thresholds frozen (sha256 %s…) → %s", frozen["sha256"][:12], path)
    return frozen
