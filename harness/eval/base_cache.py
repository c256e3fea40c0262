"""The base model's outputs, kept across runs.

The base model's samples files do not depend on the adapter: every run of a sweep, a seed
study or a negative control over the same repository asks the same base model the same
prompts. On the 2-core CPU the demo's base phase is about a quarter of its wall time, so it is
generated once and copied into later runs' eval directories from `<cache_dir>/eval-base/<key>/`.

The key holds everything those files depend on: the eval settings, the model settings, the
held-out records (by content), eval's content inputs (benchmark files, task definitions, the
sandbox's mode, user and code) and the harness's own source (any code change makes a new key).
Where the base model is not ours to pin (an external `eval.openai.base_url` can change the model
behind its name) nothing is kept. The paired-prompt check of eval still compares every restored
base file with the candidate's freshly written one.
"""

from __future__ import annotations

import logging
import shutil
from functools import cache
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_write_text, sha256_file, stable_hash

log = logging.getLogger(__name__)


@cache
def code_version() -> str:
    """Hash of every source file of the harness package."""
    root = Path(__file__).resolve().parents[1]
    return stable_hash({str(p.relative_to(root)): sha256_file(p)
                        for p in sorted(root.rglob("*.py"))})


def base_cache_dir(ecfg: DictConfig, cache_dir: str | Path, records: Path,
                   shared: dict) -> Path | None:
    """Where this run's base outputs are kept under the harness cache `cache_dir`, or None where
    they must not be reused (by the eval settings `ecfg`). `shared`: what every model output
    depends on besides the adapter (eval.stage.output_inputs)."""
    if ecfg.engine == "openai" and ecfg.openai.base_url:
        return None
    key = stable_hash({**shared, "records": sha256_file(records), "code": code_version()})
    return Path(cache_dir).expanduser() / "eval-base" / key


def restore(cache_dir: Path | None, path: Path) -> None:
    """Copy a kept base file to `path` when `path` is not there yet."""
    if cache_dir is None or path.exists() or not (kept := cache_dir / path.name).is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, path)
    log.info("%s: the base model's outputs for these settings, prompts and code, from an "
             "earlier run (%s)", path.name, kept.parent)


def keep(cache_dir: Path | None, path: Path) -> None:
    """Store a finished base file for later runs (whole or not at all). A cache that cannot be
    written costs later runs time, not this one its results: it is a warning."""
    if cache_dir is None:
        return
    try:
        atomic_write_text(cache_dir / path.name, path.read_text())
    except (HarnessError, OSError) as e:
        log.warning("could not keep %s for later runs: %s", path.name, e)
