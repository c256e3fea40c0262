"""The eval stage: base vs candidate under identical settings → per-sample JSONL + metrics.json.

Both models answer the same prompts with the same engine, decoding, stop words and batch size
(recorded in metrics.json). Tasks:
- HumanEval / MBPP pass@1 (greedy), bigcode protocol, executed in the sandbox;
- FIM on held-out holes of the test split: exact match, first-line exact match, edit similarity;
- an LLM judge scoring both models' answers to held-out change requests against a rubric.

Each (task, model) result file is written as soon as it is complete, so a crashed eval resumes
without regenerating what it already has; judge replies are cached by content.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from omegaconf import DictConfig

from harness.eval import fim_task
from harness.eval.benchmarks import Problem, load_humaneval, load_mbpp, postprocess
from harness.eval.generate import HFEngine
from harness.eval.judging import run_judge
from harness.eval.sandbox import Sandbox
from harness.format.chat import to_messages
from harness.format.fim import fim_tokens
from harness.gate.thresholds import freeze_thresholds
from harness.io import atomic_write_json, read_jsonl, sha256_text, write_jsonl
from harness.models.load import load_model, load_tokenizer, resolve_model_path
from harness.stages import require_output

log = logging.getLogger(__name__)
MODELS = ("base", "candidate")


class _LazyEngine:
    """Loads the model on first use only, so a resumed eval with every result cached loads none."""

    def __init__(self, model_ref: str, cfg: DictConfig, adapter: str | None, tokenizer):
        self._load = lambda: load_model(model_ref, cfg.model, adapter=adapter)
        self._args = (tokenizer, cfg.eval.batch_size, cfg.eval.max_new_tokens)
        self._engine: HFEngine | None = None

    def generate(self, *args, **kwargs) -> list[str]:
        if self._engine is None:
            self._engine = HFEngine(self._load(), *self._args)
        return self._engine.generate(*args, **kwargs)


def _cached(path: Path, make, *args) -> list[dict]:
    """Rows of `path` if a previous attempt finished it, else `make(*args)`, written out."""
    if path.exists():
        log.info("reusing %s", path.name)
        return list(read_jsonl(path))
    rows = make(*args)
    write_jsonl(path, rows)
    return rows


def _codegen(problems: list[Problem], engine: _LazyEngine, tokenizer, sandbox: Sandbox,
             label: str) -> list[dict]:
    task = problems[0].task
    prompts = [tokenizer(p.prompt, add_special_tokens=False)["input_ids"] for p in problems]
    stop = problems[0].stop_words
    outputs = engine.generate(prompts, stop=stop, desc=f"{task} [{label}]")
    codes = [postprocess(p, o) for p, o in zip(problems, outputs, strict=True)]
    results = sandbox.run_many([p.program(c) for p, c in zip(problems, codes, strict=True)],
                               desc=f"executing {task} [{label}]")
    return [{"task": task, "item_id": p.task_id, "model": label, "prompt_hash": sha256_text(p.prompt),
             "output": o, "passed": r.passed, "status": r.status, "error": r.error,
             "seconds": round(r.duration_s, 3)}
            for p, o, r in zip(problems, outputs, results, strict=True)]


def _fim(holes, engine: _LazyEngine, tokenizer, toks, budget: int, max_new: int, label: str) -> list[dict]:
    prompts = fim_task.prompts(tokenizer, toks, holes, budget)
    outputs = engine.generate(prompts, max_new_tokens=max_new, eos_token_ids=[toks.end, tokenizer.eos_token_id],
                              desc=f"fim [{label}]")
    return [{"task": "fim", "item_id": hid, "model": label, "prompt_hash": sha256_text(str(p)),
             "output": o, "expected": h.middle, **fim_task.score(h.middle, o)}
            for (hid, h), p, o in zip(holes, prompts, outputs, strict=True)]


def _answers(items: list[dict], engine: _LazyEngine, tokenizer, system: str, max_new: int,
             label: str) -> list[dict]:
    msgs = [to_messages(r, system)[:-1] for r in items]
    prompts = [list(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]) for m in msgs]
    outputs = engine.generate(prompts, max_new_tokens=max_new, desc=f"answers [{label}]")
    return [{"task": "judge", "item_id": r["id"], "model": label, "prompt_hash": sha256_text(str(p)),
             "output": o} for r, p, o in zip(items, prompts, outputs, strict=True)]


def _pass_metrics(rows: list[dict]) -> dict:
    """Greedy decoding gives one sample per problem, so pass@1 is the pass rate."""
    c = sum(r["passed"] for r in rows)
    return {"pass@1": c / len(rows), "passed": c, "n": len(rows)}


def run(cfg: DictConfig, out: Path) -> dict:
    e = cfg.eval
    freeze_thresholds(cfg)  # before any model output exists
    train_dir = require_output(cfg, "train")
    records = list(read_jsonl(require_output(cfg, "mine") / "records.jsonl"))
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    tokenizer = load_tokenizer(model_ref, cfg.model)
    samples = out / "samples"
    metrics: dict = {"settings": {"engine": e.engine, "decoding": "greedy", "batch_size": e.batch_size,
                                  "max_new_tokens": e.max_new_tokens, "model": model_ref,
                                  "adapter": str((train_dir / "adapter").resolve())}}

    sandbox = Sandbox(timeout_s=e.sandbox.timeout_s, memory_mb=e.sandbox.memory_mb,
                      workers=e.sandbox.workers)
    metrics["sandbox"] = {"mode": sandbox.mode}
    if e.sandbox.self_check:
        metrics["sandbox"]["self_check"] = sandbox.self_check(load_humaneval() + load_mbpp(split="all"))

    problems = {}
    if e.humaneval.enabled:
        problems["humaneval"] = load_humaneval(e.humaneval.limit)
    if e.mbpp.enabled:
        problems["mbpp"] = load_mbpp(e.mbpp.limit)
    toks = fim_tokens(tokenizer, cfg.model.fim)
    holes = fim_task.held_out_holes(
        [r for r in records if r["kind"] == "fim_source" and r["split"] == "test"],
        e.fim.holes, e.fim.max_middle_lines, e.fim.context_lines, e.fim.seed) if e.fim.enabled else []
    judge_items = [r for r in records if r["kind"] == "commit" and r["split"] == "test"]
    judge_items = judge_items[: e.judge.samples] if e.judge.enabled else []
    budget = cfg.data.format.max_length - e.fim.max_new_tokens

    answers: dict[str, list[dict]] = {}
    for label in MODELS:
        adapter = str(train_dir / "adapter") if label == "candidate" else None
        engine = _LazyEngine(model_ref, cfg, adapter, tokenizer)
        for task, probs in problems.items():
            _cached(samples / f"{task}.{label}.jsonl", _codegen, probs, engine, tokenizer,
                    sandbox, label)
        if holes:
            _cached(samples / f"fim.{label}.jsonl", _fim, holes, engine, tokenizer, toks, budget,
                    e.fim.max_new_tokens, label)
        if judge_items:
            answers[label] = _cached(samples / f"answers.{label}.jsonl", _answers, judge_items,
                                     engine, tokenizer, cfg.data.format.system_prompt,
                                     e.judge.max_new_tokens, label)
        del engine
        gc.collect()

    for task in problems:
        metrics[task] = {label: _pass_metrics(list(read_jsonl(samples / f"{task}.{label}.jsonl")))
                         for label in MODELS}
    if holes:
        metrics["fim"] = {}
        for label in MODELS:
            rows = list(read_jsonl(samples / f"fim.{label}.jsonl"))
            metrics["fim"][label] = {k: sum(r[k] for r in rows) / len(rows) for k in
                                     ("exact_match", "first_line_exact_match", "edit_similarity")}
            metrics["fim"][label]["n"] = len(rows)
    if judge_items:
        metrics["judge"] = run_judge(cfg, out, model_ref, judge_items, answers)
    else:
        log.warning("judge skipped: no held-out change requests (test-split commits) to answer")
    atomic_write_json(out / "metrics.json", metrics)
    return {k: v for k, v in metrics.items() if k != "settings"}
