"""HumanEval and MBPP through lm-eval, with our own task definitions (``lm_eval_tasks/``).

lm-eval's built-in code tasks load their data and ``code_eval`` metric from the hub; ours read
the vendored, sha256-checked ``datasets/benchmarks/`` files, follow the bigcode protocol
(prompts, stop words, post-processing) and score in our sandbox. They also work from lm-eval's
own CLI::

    lm_eval --model hf --model_args pretrained=<model>,peft=<adapter> --device cpu \\
        --include_path harness/eval/lm_eval_tasks --tasks harness_humaneval \\
        --confirm_run_unsafe_code --log_samples --output_path out/

``run_lm_eval`` runs one task for one model in-process (``hf`` backend, PEFT adapter for the
candidate) and returns rows in the one sample schema, so the gate cannot tell which path made
them. This module holds the functions the task YAMLs reference (via ``utils.py``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from harness.benchmarks import Problem, load_humaneval, load_mbpp
from harness.eval.engines.base import Decoding
from harness.eval.metrics import pass_at_k
from harness.eval.records import exec_fields, row
from harness.io import sha256_text
from harness.sandbox.execute import ExecResult, Sandbox

TASK_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
TASKS = {"humaneval": "harness_humaneval", "mbpp": "harness_mbpp"}
log = logging.getLogger(__name__)

_sandboxes: list[Sandbox] = []  # the one the task metrics use
_results: dict[tuple[str, str], list[ExecResult]] = {}  # per (task, item id), last run


def configure(sandbox: Sandbox) -> None:
    """The sandbox the task metrics use (default: an auto-detected one)."""
    _sandboxes[:] = [sandbox]


def _sandbox() -> Sandbox:
    if not _sandboxes:
        _sandboxes.append(Sandbox())
    return _sandboxes[0]


@functools.cache
def _problems(task: str) -> dict[str, Problem]:
    problems = load_humaneval() if task == "humaneval" else load_mbpp()
    return {p.task_id: p for p in problems}


def _dataset(task: str):
    from datasets import Dataset, DatasetDict

    docs = [{"task_id": p.task_id, "prompt": p.prompt} for p in _problems(task).values()]
    return DatasetDict({"test": Dataset.from_list(docs)})


# --- referenced by lm_eval_tasks/*.yaml (through utils.py) -------------------------------------

def humaneval_dataset(**_metadata):
    return _dataset("humaneval")


def mbpp_dataset(**_metadata):
    return _dataset("mbpp")


def keep_samples(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Filter that keeps every repeat: pass@k needs all n samples, not lm-eval's first."""
    return resps


def _process(task: str, doc: dict, results: list) -> dict:
    problem = _problems(task)[doc["task_id"]]
    generations = results[0] if isinstance(results[0], list) else results
    outcomes = _sandbox().run_many([problem.program_for(g) for g in generations],
                                   desc=f"executing {doc['task_id']}")
    _results[(task, doc["task_id"])] = outcomes
    return {"pass@1": pass_at_k(len(outcomes), sum(r.passed for r in outcomes), 1)}


def process_humaneval(doc: dict, results: list) -> dict:
    return _process("humaneval", doc, results)


def process_mbpp(doc: dict, results: list) -> dict:
    return _process("mbpp", doc, results)


# --- in-process runner ------------------------------------------------------------------------

def run_lm_eval(task: str, limit: int | None, *, model_ref: str, adapter: str | None,
                label: str, decoding: Decoding, batch_size: int, max_new_tokens: int,
                sandbox: Sandbox, dtype: str = "float32", device: str | None = None) -> list[dict]:
    """Generate and score ``task`` through lm-eval's ``hf`` backend; rows in our schema."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    configure(sandbox)
    name = TASKS[task]
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    task_obj = manager.load(name)["tasks"][name]
    task_obj.set_config(key="repeats", value=decoding.n)
    gen_kwargs: dict = {"max_gen_toks": max_new_tokens, "do_sample": not decoding.greedy}
    if not decoding.greedy:
        gen_kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
    model_args = f"pretrained={model_ref},dtype={dtype}" + (f",peft={adapter}" if adapter else "")
    results = simple_evaluate(
        model="hf", model_args=model_args, tasks=[task_obj], batch_size=batch_size,
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        limit=limit, log_samples=True, gen_kwargs=gen_kwargs, confirm_run_unsafe_code=True,
        task_manager=manager, random_seed=decoding.seed, numpy_random_seed=decoding.seed,
        torch_random_seed=decoding.seed, fewshot_random_seed=decoding.seed)
    return samples_to_rows(task, results["samples"][name], label)


def samples_to_rows(task: str, samples: list[dict], label: str) -> list[dict]:
    """lm-eval's logged samples (plus the sandbox results our metric kept) → our rows."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        item = s["doc"]["task_id"]
        generations = s["resps"][0]
        outcomes = _results.get((task, item))
        if outcomes is None or len(outcomes) != len(generations):
            raise RuntimeError(f"no sandbox results recorded for {task} {item}")
        prompt = s["arguments"][0][0]
        for i, (g, r) in enumerate(zip(generations, outcomes, strict=True)):
            rows.append(row(task, item, label, sha256_text(prompt), g, sample=i,
                            engine="lm_eval/hf", mode="completion", **exec_fields(r)))
    return rows
