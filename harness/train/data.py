"""The formatted datasets, cut to `train.max_length` with every example that has nothing left
to supervise dropped and counted here (TRL would drop them silently, and Unsloth fails with
"all labels are -100" on a batch of them)."""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import HarnessError
from harness.io import read_json
from harness.rundir import DATASET_CARD

log = logging.getLogger(__name__)
COLUMNS = ["input_ids", "assistant_masks"]


def load_split(format_dir: Path, name: str, max_length: int):
    """(dataset or None when the split was not written, number of examples dropped)."""
    from datasets import load_from_disk

    path = format_dir / name
    if not path.exists():
        return None, 0
    # in memory: TRL's map/filter passes would otherwise write cache files into format/
    ds = load_from_disk(str(path), keep_in_memory=True).select_columns(COLUMNS)
    if max_length >= read_json(format_dir / DATASET_CARD)["max_length"]:
        return ds, 0  # the format stage already cut every example to its max_length
    ds = ds.map(lambda ex: {k: ex[k][:max_length] for k in COLUMNS}, desc=f"cutting {name}")
    kept = ds.filter(lambda ex: any(ex["assistant_masks"]), desc=f"dropping unsupervised {name}")
    return kept, len(ds) - len(kept)


def load_train(format_dir: Path, max_length: int):
    """(train dataset, eval dataset or None); refuses when nothing is left to train on."""
    train, dropped = load_split(format_dir, "dataset", max_length)
    if not len(train):
        raise HarnessError(
            f"train.max_length={max_length} is shorter than every example's prompt: all {dropped} "
            "examples would have no supervised token. Fix: raise train.max_length (it defaults to "
            "data.format.max_length)."
        )
    if dropped:
        log.warning("dropped %d training examples with no supervised token within "
                    "train.max_length=%d", dropped, max_length)
    held, held_dropped = load_split(format_dir, "eval_dataset", max_length)
    if held_dropped:
        log.warning("dropped %d held-out examples with no supervised token within "
                    "train.max_length=%d", held_dropped, max_length)
    return train, held if held is not None and len(held) else None
