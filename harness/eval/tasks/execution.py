"""The tasks scored by running the model's program in the sandbox: HumanEval and MBPP in
completion mode (bigcode's protocol) and in chat mode, and HumanEval infilling. Their gate
metric `pass@1` is the row field `passed` (an item's value: the mean over its samples)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from omegaconf import DictConfig

from harness.benchmarks import Problem, load_humaneval, load_mbpp
from harness.eval import runner
from harness.eval.chat_codegen import ChatProblem, humaneval_chat, mbpp_chat
from harness.eval.engines.base import Engine
from harness.eval.infill import TASKS as INFILL_TASKS
from harness.eval.infill import load_infill
from harness.eval.lmeval import run_lm_eval
from harness.eval.records import pass_metrics
from harness.eval.tasks.base import Context, Section, Task
from harness.rundir import MODELS

log = logging.getLogger(__name__)
LOADERS: dict[str, Callable[..., list[Problem]]] = {"humaneval": load_humaneval, "mbpp": load_mbpp}
CHAT = {"humaneval": humaneval_chat, "mbpp": mbpp_chat}


class Executed(Task):
    """pass@k over the rows; the gate's pass@1 reads `passed`."""

    report: ClassVar[Section] = "pass_rate"
    fields: ClassVar[Mapping[str, str]] = {"pass@1": "passed"}
    pass_fail: ClassVar[frozenset[str]] = frozenset({"pass@1"})

    def summarize(self, ctx: Context, items: list, rows: dict[str, list[dict]]) -> dict:
        out = {label: pass_metrics(rows[label], list(ctx.cfg.eval.pass_at_k)) for label in MODELS}
        log.info("%s pass@1: base %.3f, candidate %.3f", self.name, out["base"]["pass@1"],
                 out["candidate"]["pass@1"])
        return out


@dataclass(frozen=True)
class Completion(Executed):
    """`humaneval` / `mbpp`: the bigcode prompt continued; our runner or lm-eval's."""

    name: str  # the benchmark, and the `eval.<name>` config section
    noise_floor: ClassVar[bool] = True

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list[Problem]:
        section = e[self.name]
        return LOADERS[self.name](section.limit) if section.enabled else []

    def generate(self, ctx: Context, items: list[Problem], engine: Engine, label: str) -> list[dict]:
        e = ctx.cfg.eval
        if e.runner == "lm_eval":
            return run_lm_eval(self.name, len(items), model_ref=ctx.model_ref,
                               adapter=ctx.adapter if label == "candidate" else None,
                               label=label, decoding=ctx.decoding, batch_size=e.batch_size,
                               max_new_tokens=e.max_new_tokens, sandbox=ctx.sandbox,
                               dtype=ctx.cfg.model.dtype or "float32")
        return self.again(ctx, items, engine, label)

    def again(self, ctx: Context, items: list[Problem], engine: Engine, label: str) -> list[dict]:
        """Our batched runner, whatever eval.runner says (also the noise floor's rerun)."""
        return runner.run_codegen(items, engine, ctx.tokenizer, ctx.sandbox, ctx.decoding, label)

    def settings(self, ctx: Context, items: list[Problem]) -> dict:
        return {"mode": "completion", "stop_words": list(items[0].stop_words)}

    def prompts(self) -> dict[str, str]:
        problems = load_humaneval() if self.name == "humaneval" else load_mbpp(split="all")
        return {p.task_id: p.prompt for p in problems}


@dataclass(frozen=True)
class Chat(Executed):
    """`<benchmark>_chat`: the problem as a user message through the chat template (always our
    runner: lm-eval's tasks complete)."""

    benchmark: str  # humaneval | mbpp: its `eval.<benchmark>` section has `chat`

    @property
    def name(self) -> str:
        return f"{self.benchmark}_chat"

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list[ChatProblem]:
        section = e[self.benchmark]
        if not (section.enabled and section.get("chat")):
            return []
        return CHAT[self.benchmark](LOADERS[self.benchmark](section.limit))

    def generate(self, ctx: Context, items: list[ChatProblem], engine: Engine,
                 label: str) -> list[dict]:
        e = ctx.cfg.eval
        return runner.run_chat_codegen(items, engine, ctx.tokenizer, ctx.sandbox, ctx.decoding,
                                       e.get("chat_max_new_tokens") or e.max_new_tokens, label)

    def settings(self, ctx: Context, items: list[ChatProblem]) -> dict:
        return {"mode": "chat", "stop_words": list(items[0].stop_words)}


@dataclass(frozen=True)
class Infill(Executed):
    """`humaneval_infill_<span>`: a hole in a canonical solution filled with the model's own
    FIM tokens (none to use when the model continues left to right)."""

    span: str  # single | multi, as in eval.humaneval_infill.spans
    fim_tokens: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return INFILL_TASKS[self.span]

    def plan(self, e: DictConfig, records: list[dict], left_to_right: bool) -> list:
        i = e.humaneval_infill
        if not i.enabled or self.span not in i.spans:
            return []
        if left_to_right:
            log.warning("%s skipped: model.fim=left_to_right (no FIM sentinels to fill a hole "
                        "between a prefix and a suffix)", self.name)
            return []
        return load_infill(self.span, i.seed, i.max_lines, i.limit)

    def generate(self, ctx: Context, items: list, engine: Engine, label: str) -> list[dict]:
        i, max_length = ctx.cfg.eval.humaneval_infill, ctx.cfg.data.format.max_length
        return runner.run_infill(items, engine, ctx.tokenizer, ctx.fim_tokens,
                                 max_length - i.max_new_tokens, i.max_new_tokens, ctx.sandbox,
                                 ctx.decoding, label)
