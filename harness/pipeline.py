"""The pipeline's stages, each declared once: what it runs after, which config sections its
output depends on, whether it is deterministic enough to cache, and its code.

harness/stages.py runs stages from these declarations and harness/cli.py lists its commands
from them; nothing else says which stages exist. A stage's code is imported when it runs, not
when this module is (eval's code pulls in torch, which an up-to-date stage never needs, and
which must not come before Unsloth on that training backend), but it is imported by a plain
`import` in one `load` function per stage below, so the call chain can be read and checked.

Adding a stage: a module with `run(cfg, out) -> summary`, a `Stage` here naming it, and its
place in `PIPELINE`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Config = Any  # an omegaconf DictConfig (not imported here: this module stays import-light)


@dataclass(frozen=True)
class Code:
    """A stage's code. `run(cfg, out)` builds the output in `out` (the `.partial` directory)
    and returns its summary; the hooks are optional:

    - `fingerprint_inputs(cfg)`: what the output depends on that the config names but does
      not hold (file contents, a repository's head), by content;
    - `resumable(cfg, partial)`: whether unfinished work in `partial` can continue;
    - `adopt(cfg, finished, partial)`: seed `partial` from a finished output when only the
      `extends` keys grew (True when it did);
    - `space_needed(partial)`: a lower bound on the write that failed, for the disk-full error;
    - `before(cfg)`: what must exist before the stage's first output, each time it runs.
    """

    run: Callable[[Config, Path], dict]
    fingerprint_inputs: Callable[[Config], dict] | None = None
    resumable: Callable[[Config, Path], bool] | None = None
    adopt: Callable[[Config, Path, Path], bool] | None = None
    space_needed: Callable[[Path], int | None] | None = None
    before: Callable[[Config], object] | None = None


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    `sections`: the config keys its output depends on (the first is the stage's own, whose
    `extends` keys the resume key relaxes); `operational`: keys of those sections that only
    steer how it runs (kept out of its fingerprint); `extends`: keys that only say how far it
    runs; `cached`: deterministic, so kept in `<cache_dir>/stages/` for any later run."""

    name: str
    upstream: str | None
    sections: tuple[str, ...]
    load: Callable[[], Code]
    cached: bool = False
    operational: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extends: tuple[str, ...] = ()


def _mine() -> Code:
    from harness.mine import stage

    return Code(run=stage.run, fingerprint_inputs=stage.fingerprint_inputs)


def _format() -> Code:
    from harness.format import stage

    return Code(run=stage.run, fingerprint_inputs=stage.fingerprint_inputs)


def _train() -> Code:
    from harness.train import stage

    return Code(run=stage.run, resumable=stage.resumable, adopt=stage.adopt,
                space_needed=stage.space_needed)


def _eval() -> Code:
    from harness.eval import stage
    from harness.gate.thresholds import freeze_thresholds

    # the gate's thresholds are frozen before any model output exists, so no result can move them
    return Code(run=stage.run, fingerprint_inputs=stage.fingerprint_inputs,
                before=freeze_thresholds)


def _gate() -> Code:
    from harness.gate import stage

    return Code(run=stage.run)


def _report() -> Code:
    from harness.report import stage

    return Code(run=stage.run)


MINE = Stage("mine", upstream=None, sections=("data.repo", "data.rev", "data.mine"), load=_mine,
             cached=True, operational={"data.mine": ("workers", "chunk_size", "cache")})
FORMAT = Stage("format", upstream="mine", sections=("data.format", "model"), load=_format,
               cached=True)
# How often training logs and saves, where it reports, how big eval batches are: none of it
# changes the trained weights (a test checks the adapter bytes). train.max_steps=-1 (train for
# train.epochs) does not extend: the step count its checkpoints belong to is unknown before
# the data is loaded, so only a positive max_steps is relaxed in the resume key.
TRAIN = Stage("train", upstream="format", sections=("train", "model"), load=_train,
              operational={"train": ("logging_steps", "save_steps", "save_total_limit",
                                     "report_to", "eval_batch_size", "memory")},
              extends=("max_steps",))
# Raising a judge budget or concurrency does not throw away finished model outputs.
EVAL = Stage("eval", upstream="train", sections=("eval", "judge", "model"), load=_eval,
             operational={"judge": ("budget_usd", "max_concurrency", "timeout_s", "max_retries",
                                    "price_per_1k_prompt_tokens",
                                    "price_per_1k_completion_tokens")})
GATE = Stage("gate", upstream="eval", sections=("gate",), load=_gate)
REPORT = Stage("report", upstream="gate", sections=("report_dir", "report"), load=_report)

PIPELINE: tuple[Stage, ...] = (MINE, FORMAT, TRAIN, EVAL, GATE, REPORT)  # in data-flow order
BY_NAME: dict[str, Stage] = {s.name: s for s in PIPELINE}
STAGES: tuple[str, ...] = tuple(BY_NAME)
