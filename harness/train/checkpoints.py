"""Find the checkpoint a killed training run resumes from.

transformers writes a checkpoint in place (weights, optimizer, scheduler, RNG state, then
`trainer_state.json` last) and its own `get_last_checkpoint` takes the highest-numbered
directory as is, so a run killed while saving would resume from a torn checkpoint. Here a
checkpoint counts only when its trainer state parses and names its own step.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from harness.io import link_or_copy

log = logging.getLogger(__name__)
PREFIX = "checkpoint-"


def checkpoint_step(path: Path) -> int:
    """The step in a `checkpoint-N` directory's name (-1 for any other name)."""
    suffix = path.name[len(PREFIX):]
    return int(suffix) if path.name.startswith(PREFIX) and suffix.isdigit() else -1


_step = checkpoint_step


def complete(path: Path) -> bool:
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == _step(path)


def last_checkpoint(root: Path) -> Path | None:
    """The newest complete `checkpoint-N` under `root`, or None."""
    for path in sorted(root.glob(PREFIX + "*"), key=_step, reverse=True):
        if path.is_dir() and _step(path) >= 0:
            if complete(path):
                return path
            log.warning("ignoring %s: incomplete (the run was stopped while saving it)", path)
    return None


def link_tree(src: Path, dst: Path) -> None:
    """A copy of `src` at `dst` made of hard links where the filesystem allows (no bytes
    copied for a multi-GB checkpoint), else of copies."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, copy_function=link_or_copy, dirs_exist_ok=True)
