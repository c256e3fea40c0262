"""`judge`: both models answer held-out change requests (test-split commits, PRs, review
fixes), and an LLM judge grades the answers (harness/eval/judging.py). The gate metric
`judge.<criterion>` reads the judge's rows, one per (item, criterion): the logprob-weighted
score where there is one, else the parsed score."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from omegaconf import DictConfig

from harness.eval import runner
from harness.eval.engines.base import Engine
from harness.eval.judging import run_judge
from harness.eval.tasks.base import Context, Section, Task
from harness.format.chat import to_messages
from harness.rundir import JUDGE_SCORES

log = logging.getLogger(__name__)
REQUESTS = ("commit", "pr", "review_fix")  # record kinds: what a teammate asked, and the answer


@dataclass(frozen=True)
class Judge(Task):
    name: str = "judge"
    report: ClassVar[Section] = "judge"

    @property
    def samples(self) -> str:
        return "answers"  # the models' answers; the judge's grades are in judge_scores

    @property
    def scored(self) -> str:
        return JUDGE_SCORES

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list[dict]:
        items = [r for r in records if r["kind"] in REQUESTS and r["split"] == "test"]
        items = items[: e.judge.samples] if e.judge.enabled else []
        if not items:
            log.warning("judge skipped: no held-out change requests (test-split commits) to answer")
        return items

    def generate(self, ctx: Context, items: list[dict], engine: Engine, label: str) -> list[dict]:
        system = ctx.cfg.data.format.system_prompt

        def messages(record: dict) -> list[dict]:  # the chat prompt, without the reference reply
            return to_messages(record, system)[:-1]

        return runner.run_answers(items, engine, ctx.tokenizer, messages,
                                  ctx.cfg.eval.judge.max_new_tokens, label)

    def summarize(self, ctx: Context, items: list[dict], rows: dict[str, list[dict]]) -> dict:
        return run_judge(ctx.cfg.judge, ctx.cfg.model, ctx.cfg.cache_dir, ctx.out, ctx.model_ref,
                         items, rows)

    def value(self, row: dict, field: str) -> float | None:
        if row["criterion"] != field:
            return None
        return row["weighted_score"] if row.get("weighted_score") is not None else row["score"]
