"""Run one stage of the pipeline with a file contract, caching and crash safety.

Each stage writes into `<run_dir>/<stage>.partial/` and the directory is renamed to
`<run_dir>/<stage>/` only when the stage finished, with `stage.json` recording a fingerprint
of everything the output depends on (its config sections and the upstream fingerprint).
A rerun with the same fingerprint skips the stage; a crashed stage leaves its `.partial`
directory, which the next attempt reuses (training resumes from its checkpoints there).

What each stage runs after, depends on and runs is declared in harness/pipeline.py. Keys that
only steer how a stage runs (its `operational` keys) are in no fingerprint. Keys that say how
far it runs (its `extends` keys: a positive train.max_steps) are in the fingerprint but not in the
*resume key*: work done under the same resume key is continued, not redone, so raising
train.max_steps trains on from the last checkpoint of a finished or interrupted run. A change
of any other key makes the old `.partial` unusable: it is set aside as `<stage>.superseded/`
(with a message naming the keys that changed) and deleted only once the new run is published;
changing the keys back resumes it.

A stage whose upstream has not run in this run dir runs it first, so every command (and every
job of a Hydra multirun) is complete on its own. Deterministic stages (`cached`) are also kept
in `<cache_dir>/stages/<stage>/<fingerprint>/` and restored from there by any later run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness import rundir
from harness.config_check import check_config
from harness.errors import HarnessError
from harness.io import (
    atomic_write_json,
    disk_full_error,
    free_bytes,
    is_disk_full,
    link_or_copy,
    make_temp_dir,
    read_json,
    stable_hash,
)
from harness.pipeline import BY_NAME, Code, Stage
from harness.rundir import (
    is_finished,
    partial_dir,
    publish,
    read_stage,
    superseded_dir,
    write_stage,
)

log = logging.getLogger(__name__)

# What each stage runs after (harness/preflight.py walks it to know what will run).
UPSTREAM = {s.name: s.upstream for s in BY_NAME.values() if s.upstream}


def stage_dir(cfg: DictConfig, name: str) -> Path:
    """`<run_dir>/<name>/` of this config's run."""
    return rundir.stage_dir(cfg.run_dir, name)


def require_output(cfg: DictConfig, name: str) -> Path:
    """The finished output directory of an upstream stage, or a clear error."""
    return finished_output(cfg.run_dir, cfg.run_name, name)


def finished_output(run_dir: str | Path, run_name: str, name: str) -> Path:
    """`require_output` from the run's directory and name, for code below the entry points
    (which is given those, not the composed config)."""
    path = rundir.stage_dir(run_dir, name)
    if not is_finished(path):
        raise HarnessError(
            f"no finished '{name}' stage in {run_dir}. Fix: run `harness {name} "
            f"run_name={run_name}` first, or `harness run` to chain every stage."
        )
    return path


def fingerprint_parts(cfg: DictConfig, name: str, code: Code | None = None) -> dict:
    """Everything stage `name`'s output depends on: its config sections less the operational
    keys, its code's own inputs, and the upstream fingerprint."""
    stage = BY_NAME[name]
    code = code or stage.load()
    parts: dict = {"stage": name}
    for key in stage.sections:
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in stage.operational.get(key, ())}
        parts[key] = value
    if code.fingerprint_inputs is not None:
        parts["inputs"] = code.fingerprint_inputs(cfg)
    if stage.upstream:
        parts["upstream"] = read_stage(require_output(cfg, stage.upstream))["fingerprint"]
    return parts


def fingerprint(cfg: DictConfig, name: str) -> str:
    return stable_hash(fingerprint_parts(cfg, name))


def resume_key(parts: dict, name: str) -> str:
    """The fingerprint with the positive values of the keys that say how far the stage runs
    (the stage's `extends`) left out: work under the same key can be continued."""
    stage = BY_NAME[name]
    section = stage.sections[0]
    trimmed = {**parts}
    if isinstance(parts.get(section), dict):
        trimmed[section] = {k: "set" if k in stage.extends and isinstance(v, int) and v > 0
                            else v for k, v in parts[section].items()}
    return stable_hash(trimmed)


def _flat(obj: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, object] = {}
    for k, v in obj.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(old: dict, new: dict) -> list[str]:
    """`key: old → new` for every setting that differs between two fingerprint parts."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {a.get(k, '<unset>')!r} → {b.get(k, '<unset>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _marker(path: Path) -> dict | None:
    """What a `.partial` directory was started for (None: unknown, e.g. an older harness)."""
    try:
        marker = read_json(path / ".fingerprint")
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "resume" in marker else None


def run_stage(cfg: DictConfig, name: str, force: bool = False) -> dict:
    """Run stage `name` unless an identical finished output exists; return its summary."""
    check_config(cfg)  # every setting's type and range, before any work (and upstream's)
    stage = BY_NAME[name]
    if stage.upstream and not is_finished(stage_dir(cfg, stage.upstream)):
        log.info("%s: needs '%s', which has not run in %s; running it first", name,
                 stage.upstream, cfg.run_dir)
        run_stage(cfg, stage.upstream)
    out = stage_dir(cfg, name)
    code = stage.load()
    parts = fingerprint_parts(cfg, name, code)
    fp, resume = stable_hash(parts), resume_key(parts, name)
    if not force and is_finished(out) and read_stage(out)["fingerprint"] == fp:
        log.info("%s: up to date, skipped (%s)", name, out)
        return read_stage(out)["summary"]
    partial = partial_dir(out)
    cached = Path(cfg.cache_dir).expanduser() / "stages" / name / fp
    if stage.cached and not force and is_finished(cached):
        if partial.exists():
            shutil.rmtree(partial)
        shutil.copytree(cached, partial, copy_function=link_or_copy)
        publish(partial, out)
        log.info("%s: restored from the stage cache (%s) → %s", name, cached, out)
        return read_stage(out)["summary"]
    superseded = _prepare_partial(cfg, stage, code, partial, out, parts, resume)
    marker = partial / ".fingerprint"
    atomic_write_json(marker, {"fingerprint": fp, "resume": resume, "parts": parts})
    log.info("%s: running → %s", name, out)
    t0 = time.time()
    if code.before is not None:
        code.before(cfg)
    try:
        summary = code.run(cfg, partial)
    except HarnessError:
        raise
    except Exception as e:
        needed = code.space_needed(partial) if code.space_needed is not None else None
        if _out_of_space(e, partial, needed):
            raise disk_full_error(partial, needed, at_least=True) from e
        raise
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun / accelerate: rank 0 publishes
        return summary
    marker.unlink()
    finish(partial, name, fp, summary, seconds=round(time.time() - t0, 2), resume=resume)
    if superseded.exists():
        shutil.rmtree(superseded)
        log.info("%s: removed %s (the earlier config's work; the new run is published)", name,
                 superseded)
    if stage.cached:
        _store(out, cached)
    log.info("%s: done in %.1fs → %s", name, time.time() - t0, out)
    return summary


def finish(partial: Path, name: str, fingerprint: str, summary: dict, *, seconds: float,
           resume: str | None = None) -> Path:
    """Record the complete output in `partial` as a finished `name` stage and publish it as
    `<run_dir>/<name>/`: the one way a stage output comes into being, whether the stage
    runner built it or another command did (`harness merge-adapters` writes a train output)."""
    write_stage(partial, name, fingerprint, summary, seconds=seconds, resume=resume)
    return publish(partial, partial.with_name(name))


def _prepare_partial(cfg: DictConfig, stage: Stage, code: Code, partial: Path, out: Path,
                     parts: dict, resume: str) -> Path:
    """Make `partial` ready to (re)start under resume key `resume`; returns the superseded dir.

    Work started under another resume key is set aside (never deleted before the new run is
    published); work set aside earlier under this key is taken back. A finished output under
    this key (only train.max_steps/epochs changed) seeds the partial via the code's `adopt`.
    """
    name = stage.name
    superseded = superseded_dir(out)
    current = _marker(partial) if partial.exists() else None
    if partial.exists() and (current is None or current["resume"] != resume
                             or not _resumable(code, cfg, partial)):
        if superseded.exists() and (_marker(superseded) or {}).get("resume") == resume:
            partial.rename(superseded.with_name(superseded.name + ".tmp"))  # swap the two
            superseded.rename(partial)
            superseded.with_name(superseded.name + ".tmp").rename(superseded)
            log.warning("%s: resuming the work kept in %s (the config is back to it); the "
                        "other config's work is kept in %s until this run finishes", name,
                        partial, superseded)
            return superseded
        if superseded.exists():
            shutil.rmtree(superseded)
        partial.rename(superseded)
        why = (changed_keys(current["parts"], parts) if current else ["(unknown: no marker)"])
        log.warning("%s: the work in %s cannot be resumed under this config (changed: %s); it "
                    "is kept in %s until this run finishes, and resumed if you change it back",
                    name, partial, "; ".join(why[:8]) or "its progress", superseded)
    if not partial.exists():
        partial.mkdir(parents=True)
        finished = read_stage(out) if is_finished(out) else {}
        if finished.get("resume") == resume and code.adopt is not None \
                and code.adopt(cfg, out, partial):
            log.info("%s: continuing the finished run in %s (only %s changed)", name, out,
                     ", ".join(f"{stage.sections[0]}.{k}" for k in stage.extends))
    return superseded


def _out_of_space(exc: Exception, partial: Path, needed: int | None) -> bool:
    """Whether a stage failed because its filesystem is full. safetensors says so, but torch's
    checkpoint writer fails with an opaque RuntimeError ("unexpected pos 576 vs 534"), so a
    write error while less than the needed space (at least 1 MiB) is free counts as well."""
    if is_disk_full(exc):
        return True
    return isinstance(exc, OSError | RuntimeError) and free_bytes(partial) < max(needed or 0, 1 << 20)


def _resumable(code: Code, cfg: DictConfig, partial: Path) -> bool:
    return code.resumable(cfg, partial) if code.resumable is not None else True


def _store(out: Path, cached: Path) -> None:
    """Copy a finished stage into the cache (atomically: a temp dir renamed into place)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(cached.parent, prefix=f".{cached.name}.")
    shutil.copytree(out, tmp, dirs_exist_ok=True, copy_function=link_or_copy)
    try:
        tmp.rename(cached)
    except OSError:  # another run stored the same fingerprint first
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
