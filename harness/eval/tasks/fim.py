"""`fim`: held-out holes of the test split (harness/eval/fim_task.py), scored by text match.
The gate reads a row field of the same name (exact_match, first_line_exact_match,
edit_similarity); the first two are 0/1 per hole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import DictConfig

from harness.eval import fim_task, runner
from harness.eval.engines.base import Engine
from harness.eval.engines.hf import HFEngine
from harness.eval.records import match_metrics
from harness.eval.tasks.base import Context, Section, Task
from harness.format.fim import is_left_to_right
from harness.rundir import MODELS


@dataclass(frozen=True)
class Fim(Task):
    name: str = "fim"
    report: ClassVar[Section] = "match"
    pass_fail: ClassVar[frozenset[str]] = frozenset({"exact_match", "first_line_exact_match"})
    fim_tokens: ClassVar[bool] = True

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list:
        """Without FIM sentinels (`left_to_right`), single-line holes: next-line completion."""
        f = e.fim
        if not f.enabled:
            return []
        sources = [r for r in records if r["kind"] == "fim_source" and r["split"] == "test"]
        return fim_task.held_out_holes(sources, f.holes, 1 if left_to_right else f.max_middle_lines,
                                       f.context_lines, f.seed)

    def generate(self, ctx: Context, items: list, engine: Engine, label: str) -> list[dict]:
        f, max_length = ctx.cfg.eval.fim, ctx.cfg.data.format.max_length
        if f.get("batch_size") and isinstance(engine, HFEngine):
            # long prompts, one short line each: on CPU smaller batches prefill faster
            engine = HFEngine(engine.model, engine.tokenizer, f.batch_size, engine.max_new_tokens)
        return runner.run_fim(items, engine, ctx.tokenizer, ctx.fim_tokens,
                              max_length - f.max_new_tokens, f.max_new_tokens, label)

    def summarize(self, ctx: Context, items: list, rows: dict[str, list[dict]]) -> dict:
        return {label: match_metrics(rows[label]) for label in MODELS}

    def settings(self, ctx: Context, items: list) -> dict:
        return {"mode": "left_to_right" if is_left_to_right(ctx.cfg.model.fim) else "sentinels",
                "batch_size": ctx.cfg.eval.fim.get("batch_size") or ctx.cfg.eval.batch_size}
