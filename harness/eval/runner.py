"""Our batched runner: generate with an engine, score, and return rows in the one schema.

Scoring is separate from generation (``score_generations``), so generations from anywhere
(lm-eval, a bigcode generations file) are scored by exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from harness.eval import chat_codegen, fim_task
from harness.eval.engines.base import GREEDY, Decoding, Engine
from harness.eval.records import exec_fields, row
from harness.format.fim import FimTokens, fim_prompt_ids, has_first_line
from harness.io import sha256_text
from harness.sandbox.execute import Sandbox


class ExecItem(Protocol):
    """A problem scored by execution (benchmarks.Problem, infill.InfillItem)."""

    task: str
    task_id: str

    def program_for(self, generation: str) -> str: ...


def score_generations(items: Sequence[ExecItem], generations: list[list[str]], sandbox: Sandbox,
                      *, model: str, engine: str, prompt_hashes: list[str],
                      gen_seconds: list[float] | None = None,
                      expected: list[str] | None = None) -> list[dict]:
    """One row per (item, sample): the raw generation, its program run in the sandbox; with
    `expected` (per item: the text a hole held), also how close the generation came to it."""
    flat = [(i, s, g) for i, gens in enumerate(generations) for s, g in enumerate(gens)]
    task = items[0].task
    results = sandbox.run_many([items[i].program_for(g) for i, _, g in flat],
                               desc=f"executing {task} [{model}]")
    rows = []
    for (i, s, g), result in zip(flat, results, strict=True):
        extra = ({"expected": expected[i], **fim_task.score(expected[i], g)}
                 if expected is not None else {})
        rows.append(row(task, items[i].task_id, model, prompt_hashes[i], g, sample=s,
                        engine=engine, mode=getattr(items[i], "mode", None), gen_seconds=gen_seconds[i] if gen_seconds else None,
                        **exec_fields(result), **extra))
    return rows


def run_codegen(problems: list, engine: Engine, tokenizer, sandbox: Sandbox, decoding: Decoding,
                label: str) -> list[dict]:
    """HumanEval / MBPP: continue the bigcode prompt, cut at the task's stop words, execute."""
    prompts = [tokenizer(p.prompt, add_special_tokens=False)["input_ids"] for p in problems]
    gens = engine.generate(prompts, stop=problems[0].stop_words, decoding=decoding,
                           desc=f"{problems[0].task} [{label}]")
    return score_generations(problems, [g.outputs for g in gens], sandbox, model=label,
                             engine=engine.name, prompt_hashes=[sha256_text(p.prompt) for p in problems],
                             gen_seconds=[g.seconds for g in gens])


def run_chat_codegen(problems: list, engine: Engine, tokenizer, sandbox: Sandbox,
                     decoding: Decoding, max_new_tokens: int, label: str) -> list[dict]:
    """HumanEval / MBPP in chat mode (harness/eval/chat_codegen.py): the chat template's
    generation prompt opened with a ```python fence, cut at the closing fence, executed."""
    prefill = tokenizer(chat_codegen.PREFILL, add_special_tokens=False)["input_ids"]
    prompts = [list(tokenizer.apply_chat_template(p.messages(), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"])
               + prefill for p in problems]
    gens = engine.generate(prompts, stop=chat_codegen.STOP, max_new_tokens=max_new_tokens,
                           decoding=decoding, desc=f"{problems[0].task} [{label}]")
    return score_generations(problems, [g.outputs for g in gens], sandbox, model=label,
                             engine=engine.name, prompt_hashes=[sha256_text(str(p)) for p in prompts],
                             gen_seconds=[g.seconds for g in gens])


def run_infill(items: list, engine: Engine, tokenizer, toks: FimTokens, budget: int,
               max_new_tokens: int, sandbox: Sandbox, decoding: Decoding, label: str) -> list[dict]:
    """HumanEval infilling with the model's own FIM tokens, scored by execution."""
    prompts = [fim_prompt_ids(tokenizer, toks, i.prefix, i.suffix, budget) for i in items]
    gens = engine.generate(prompts, max_new_tokens=max_new_tokens,
                           eos_token_ids=_ends(toks, tokenizer), decoding=decoding,
                           desc=f"{items[0].task} [{label}]")
    return score_generations(items, [g.outputs for g in gens], sandbox, model=label,
                             engine=engine.name, prompt_hashes=[sha256_text(str(p)) for p in prompts],
                             gen_seconds=[g.seconds for g in gens],
                             expected=[i.middle for i in items])


def run_fim(holes: list, engine: Engine, tokenizer, toks: FimTokens | None, budget: int,
            max_new_tokens: int, label: str) -> list[dict]:
    """Held-out holes, greedy: exact match, first-line exact match, edit similarity. Without
    sentinels (`toks` None) the next line is predicted left to right (fim_mode in each row)."""
    prompts = fim_task.prompts(tokenizer, toks, holes, budget)
    ends = _ends(toks, tokenizer) if toks is not None else None  # None: the model's own eos
    gens = engine.generate(prompts, max_new_tokens=max_new_tokens, eos_token_ids=ends,
                           decoding=GREEDY, desc=f"fim [{label}]",
                           done=None if toks is not None else has_first_line)
    mode = "sentinels" if toks is not None else "left_to_right"
    rows = []
    for (hid, h), p, g in zip(holes, prompts, gens, strict=True):
        got = fim_task.answer(g.outputs[0], toks)
        rows.append(row("fim", hid, label, sha256_text(str(p)), g.outputs[0], engine=engine.name,
                        expected=h.middle, gen_seconds=g.seconds, mode=mode,
                        **fim_task.score(h.middle, got)))
    return rows


def run_answers(items: list[dict], engine: Engine, tokenizer, messages, max_new_tokens: int,
                label: str) -> list[dict]:
    """Answers to held-out change requests (greedy), for the judge."""
    prompts = [list(tokenizer.apply_chat_template(messages(r), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"])
               for r in items]
    gens = engine.generate(prompts, max_new_tokens=max_new_tokens, decoding=GREEDY,
                           desc=f"answers [{label}]")
    return [row("judge", r["id"], label, sha256_text(str(p)), g.outputs[0], engine=engine.name,
                gen_seconds=g.seconds)
            for r, p, g in zip(items, prompts, gens, strict=True)]


def _ends(toks: FimTokens, tokenizer) -> list[int]:
    return [i for i in (toks.end, tokenizer.eos_token_id) if i is not None]
