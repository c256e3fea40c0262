"""Run one stage of the pipeline with a file contract, caching and crash safety.

Each stage writes into `<run_dir>/<stage>.partial/` and the directory is renamed to
`<run_dir>/<stage>/` only when the stage finished, with `stage.json` recording a fingerprint
of everything the output depends on (its config sections and the upstream fingerprint).
A rerun with the same fingerprint skips the stage; a crashed stage leaves its `.partial`
directory, which the next attempt reuses (training resumes from its checkpoints there).

A stage whose upstream has not run in this run dir runs it first, so every command (and every
job of a Hydra multirun) is complete on its own. Deterministic stages (`CACHED`) are also kept
in `<cache_dir>/stages/<stage>/<fingerprint>/` and restored from there by any later run.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json, stable_hash

log = logging.getLogger(__name__)

STAGES = ("mine", "format", "train", "eval", "gate", "report")
UPSTREAM = {"format": "mine", "train": "format", "eval": "train", "gate": "eval", "report": "gate"}
# Config sections each stage's output depends on.
# Keys that only steer how a stage runs (not what it produces) stay out of its fingerprint,
# so raising a judge budget or concurrency does not throw away finished model outputs.
OPERATIONAL = {"data.mine": ("workers", "chunk_size", "cache"),
               "judge": ("budget_usd", "max_concurrency", "timeout_s", "max_retries",
                         "price_per_1k_prompt_tokens", "price_per_1k_completion_tokens")}
SECTIONS = {
    "mine": ["data.repo", "data.rev", "data.mine"],
    "format": ["data.format", "model"],
    "train": ["train", "model"],
    "eval": ["eval", "judge", "model"],
    "gate": ["gate"],
    "report": ["report_dir", "report"],
}
MODULES = {name: f"harness.{name}.stage" for name in STAGES}
CACHED = frozenset({"mine", "format"})


def stage_dir(cfg: DictConfig, name: str) -> Path:
    return Path(cfg.run_dir) / name


def require_output(cfg: DictConfig, name: str) -> Path:
    """The finished output directory of an upstream stage, or a clear error."""
    path = stage_dir(cfg, name)
    if not (path / "stage.json").exists():
        raise HarnessError(
            f"no finished '{name}' stage in {cfg.run_dir}. Fix: run `harness {name} "
            f"run_name={cfg.run_name}` first, or `harness run` to chain every stage."
        )
    return path


def fingerprint(cfg: DictConfig, name: str) -> str:
    parts: dict = {"stage": name}
    for key in SECTIONS[name]:
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in OPERATIONAL.get(key, ())}
        parts[key] = value
    module = importlib.import_module(MODULES[name])
    if hasattr(module, "fingerprint_inputs"):
        parts["inputs"] = module.fingerprint_inputs(cfg)
    if name in UPSTREAM:
        parts["upstream"] = read_json(require_output(cfg, UPSTREAM[name]) / "stage.json")["fingerprint"]
    return stable_hash(parts)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # cache and runs usually share a filesystem: no bytes copied
    except OSError:
        shutil.copy2(src, dst)


def _publish(partial: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def run_stage(cfg: DictConfig, name: str, force: bool = False) -> dict:
    """Run stage `name` unless an identical finished output exists; return its summary."""
    upstream = UPSTREAM.get(name)
    if upstream and not (stage_dir(cfg, upstream) / "stage.json").exists():
        log.info("%s: needs '%s', which has not run in %s; running it first", name, upstream,
                 cfg.run_dir)
        run_stage(cfg, upstream)
    out = stage_dir(cfg, name)
    fp = fingerprint(cfg, name)
    done = out / "stage.json"
    if not force and done.exists() and read_json(done)["fingerprint"] == fp:
        log.info("%s: up to date, skipped (%s)", name, out)
        return read_json(done)["summary"]
    partial = out.with_name(name + ".partial")
    cached = Path(cfg.cache_dir).expanduser() / "stages" / name / fp
    if name in CACHED and not force and (cached / "stage.json").exists():
        if partial.exists():
            shutil.rmtree(partial)
        shutil.copytree(cached, partial, copy_function=_link_or_copy)
        _publish(partial, out)
        log.info("%s: restored from the stage cache (%s) → %s", name, cached, out)
        return read_json(done)["summary"]
    marker = partial / ".fingerprint"
    if partial.exists() and (not marker.exists() or marker.read_text() != fp):
        shutil.rmtree(partial)  # leftovers of a different config: not resumable
    partial.mkdir(parents=True, exist_ok=True)
    marker.write_text(fp)
    log.info("%s: running → %s", name, out)
    t0 = time.time()
    summary = importlib.import_module(MODULES[name]).run(cfg, partial)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun / accelerate: rank 0 publishes
        return summary
    atomic_write_json(partial / "stage.json", {"stage": name, "fingerprint": fp,
                                               "seconds": round(time.time() - t0, 2),
                                               "summary": summary})
    marker.unlink()
    _publish(partial, out)
    if name in CACHED:
        _store(out, cached)
    log.info("%s: done in %.1fs → %s", name, time.time() - t0, out)
    return summary


def _store(out: Path, cached: Path) -> None:
    """Copy a finished stage into the cache (atomically: a temp dir renamed into place)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}."))
    shutil.copytree(out, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
    try:
        tmp.rename(cached)
    except OSError:  # another run stored the same fingerprint first
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
