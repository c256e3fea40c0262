"""What an eval task is: its items, how both models are asked them, how their rows are scored,
and what the gate and the report read from those rows.

A task family subclasses ``Task``; an instance registered in harness/eval/tasks/__init__.py
is a task. The eval stage, the gate and the report know tasks only through this interface
(lm-eval's ``Task`` and registry split the same way: documents, requests, per-item results,
aggregation), so a new task is one module plus one registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from omegaconf import DictConfig

from harness.eval.engines.base import Decoding, Engine
from harness.format.fim import FimTokens
from harness.sandbox.execute import Sandbox

# the report's sections: pass@1 with Wilson intervals and flipped problems; text match; the judge
Section = Literal["pass_rate", "match", "judge"]


@dataclass(frozen=True)
class Context:
    """What generation and scoring may use, built once per eval run."""

    cfg: DictConfig
    out: Path  # the eval dir being written
    tokenizer: Any
    sandbox: Sandbox
    decoding: Decoding
    model_ref: str
    adapter: str  # the candidate's LoRA adapter
    fim_tokens: FimTokens | None  # None: the model continues left to right (or no FIM task)


class Task:
    """One eval task. Subclasses set the class attributes and implement plan, generate and
    summarize; the defaults fit a task whose gate metrics are row fields."""

    name: str  # metrics.json key, the `<task>` of a gate metric `<task>.<field>`
    report: ClassVar[Section]  # which section of the report shows it
    # gate metric field -> the row field holding its per-item value (absent: the same name)
    fields: ClassVar[Mapping[str, str]] = {}
    pass_fail: ClassVar[frozenset[str]] = frozenset()  # gate fields whose values are 0/1
    fim_tokens: ClassVar[bool] = False  # needs the model's FIM sentinels
    noise_floor: ClassVar[bool] = False  # measured twice on the base model (eval.noise_floor)

    @property
    def samples(self) -> str:
        """The `<task>` of samples/<task>.<model>.jsonl holding the models' outputs."""
        return self.name

    @property
    def scored(self) -> str:
        """The `<task>` of the samples files the gate pairs per item."""
        return self.samples

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list:
        """The items to ask both models, from the `eval` config and the mined records;
        empty when the task is off."""
        raise NotImplementedError

    def generate(self, ctx: Context, items: list, engine: Engine, label: str) -> list[dict]:
        """One model's rows (harness/eval/records.py schema) for `items`."""
        raise NotImplementedError

    def again(self, ctx: Context, items: list, engine: Engine, label: str) -> list[dict]:
        """The base model asked again with `engine` (the noise floor: another batch size);
        tasks with `noise_floor` implement it."""
        raise NotImplementedError

    def summarize(self, ctx: Context, items: list, rows: dict[str, list[dict]]) -> dict:
        """metrics.json's entry for this task, from both models' rows."""
        raise NotImplementedError

    def settings(self, ctx: Context, items: list) -> dict:
        """What metrics.json's `settings` records of how the models were asked: `mode`,
        `stop_words` (absent: nothing to record)."""
        return {}

    def value(self, row: dict, field: str) -> float | None:
        """The per-item value of gate metric `<task>.<field>` in one scored row (None: the
        row has none)."""
        return row.get(self.fields.get(field, field))

    def prompts(self) -> dict[str, str]:
        """item id -> the prompt text both models were given, where the task has one the
        report can show (the rows keep only its hash)."""
        return {}
