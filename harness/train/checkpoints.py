"""Find the checkpoint a killed training run resumes from.

transformers writes a checkpoint in place (weights, optimizer, scheduler, RNG state, then
`trainer_state.json` last) and its own `get_last_checkpoint` takes the highest-numbered
directory as is, so a run killed while saving would resume from a torn checkpoint. Here a
checkpoint counts only when its trainer state parses and names its own step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "checkpoint-"


def _step(path: Path) -> int:
    suffix = path.name[len(PREFIX):]
    return int(suffix) if suffix.isdigit() else -1


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
