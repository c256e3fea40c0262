"""Thresholds are declared before eval: the eval stage freezes `conf/gate` into the run dir,
with its hash and time, and the gate judges with that frozen copy only. A config changed
after the freeze, or a frozen file edited by hand, is reported in the verdict and blocks
deploy."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.gate.rules import validate
from harness.io import atomic_write_json, read_json, stable_hash
from harness.rundir import THRESHOLDS

log = logging.getLogger(__name__)


def thresholds_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / THRESHOLDS


def current(gcfg: DictConfig) -> dict:
    """The gate settings as declared; a check set to null is off (e.g. the demo's judge check,
    whose offline judge is the model under test) and is left out of what is frozen."""
    gate = OmegaConf.to_container(gcfg, resolve=True)
    gate["checks"] = {k: v for k, v in (gate.get("checks") or {}).items() if v is not None}
    return {"gate": gate, "sha256": stable_hash(gate)}


def freeze_thresholds(cfg: DictConfig) -> dict:
    """Validate and write the thresholds once per run; later calls keep the first copy. The
    eval stage's `before` hook (harness/pipeline.py), so it takes the composed config."""
    path = thresholds_path(cfg.run_dir)
    if path.exists():
        return read_json(path)
    frozen = {**current(cfg.gate), "frozen_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    validate(frozen["gate"])  # a gate that cannot be applied should stop eval, not follow it
    atomic_write_json(path, frozen)
    log.info("gate thresholds frozen (sha256 %s…) → %s", frozen["sha256"][:12], path)
    return frozen


def load_frozen(run_dir: str | Path, gcfg: DictConfig) -> tuple[dict, list[str]]:
    """The frozen thresholds of the run in `run_dir`, and what makes them untrustworthy: edits
    to the frozen file, and every setting of the gate settings `gcfg` whose current value
    differs from the frozen one."""
    path = thresholds_path(run_dir)
    if not path.exists():
        raise HarnessError(f"no frozen thresholds at {path}: they are written when eval starts. "
                           "Fix: run `harness eval` for this run first.")
    frozen = read_json(path)
    flags = []
    if stable_hash(frozen["gate"]) != frozen["sha256"]:
        flags.append(f"{path} was edited after it was frozen (its content no longer matches "
                     f"its sha256)")
    now = current(gcfg)["gate"]
    flags += [f"gate.{key} changed after eval: frozen {old!r}, now {new!r}"
              for key, old, new in _differences(frozen["gate"], now)]
    return frozen, flags


def _differences(old: object, new: object, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if old == new else [(prefix, old, new)]
