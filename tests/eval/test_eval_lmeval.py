"""HumanEval and MBPP through lm-eval with our task definitions: lm-eval's own pipeline
(prompts, repeats, filters, metric) gives the same verdicts as our runner on the same
generations, and its hf backend runs the tiny model with a PEFT adapter."""

from __future__ import annotations

import pytest
from conftest import make_adapter
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

from harness.benchmarks import load_humaneval, load_mbpp
from harness.eval import lmeval
from harness.eval.engines.base import Decoding
from harness.eval.engines.hf import HFEngine
from harness.eval.runner import score_generations
from harness.io import sha256_text
from harness.models.load import load_model, load_tokenizer
from harness.sandbox.execute import Sandbox

BROKEN = {"humaneval": "\n    return None\n", "mbpp": "def nothing():\n    return None\n"}


class Replay(LM):
    """Answers each prompt with the generations given for it, in order: lm-eval's task
    pipeline then scores known generations, some right and some wrong."""

    def __init__(self, by_prompt: dict[str, list[str]]):
        super().__init__()
        self.by_prompt = {k: list(v) for k, v in by_prompt.items()}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        return [self.by_prompt[r.args[0]].pop(0) for r in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def continuation(problem) -> str:
    """The reference solution as a model would continue the bigcode prompt (HumanEval's
    reference holds the unstripped prompt; MBPP's is the code alone)."""
    ref, at = problem.reference, problem.reference.find(problem.prompt)
    return ref[at + len(problem.prompt):] if at >= 0 else ref


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    box = Sandbox(timeout_s=10, workers=2)
    lmeval.configure(box)
    return box


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_lm_eval_and_our_runner_give_the_same_verdicts_on_the_same_generations(task, sandbox):
    problems = (load_humaneval if task == "humaneval" else load_mbpp)(limit=6)
    # per problem two samples: alternately right-then-wrong and wrong-then-right
    gens = [[continuation(p), BROKEN[task]][:: 1 if i % 2 else -1] for i, p in enumerate(problems)]
    manager = TaskManager(include_path=str(lmeval.TASK_DIR), include_defaults=False)
    name = lmeval.TASKS[task]
    task_obj = manager.load(name)["tasks"][name]
    task_obj.set_config(key="repeats", value=2)
    out = simple_evaluate(model=Replay({p.prompt: g for p, g in zip(problems, gens, strict=True)}),
                          tasks=[task_obj], task_manager=manager, limit=len(problems),
                          log_samples=True, confirm_run_unsafe_code=True)
    logged = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    theirs = lmeval.samples_to_rows(task, logged, "base")
    ours = score_generations(problems, gens, sandbox, model="base", engine="hf",
                             prompt_hashes=[sha256_text(p.prompt) for p in problems])

    assert [r["passed"] for r in theirs] == [r["passed"] for r in ours]
    assert [r["passed"] for r in ours] == [False, True, True, False] * 3  # both kinds occur
    assert [r["prompt_hash"] for r in theirs] == [r["prompt_hash"] for r in ours]  # same prompts
    assert [s["pass@1"] for s in logged] == [0.5] * len(problems)  # lm-eval's own per-doc metric
    assert out["results"][name]["pass@1,all_samples"] == 0.5


def test_the_hf_backend_runs_the_adapter_and_matches_our_engine(tiny_model, tmp_path, sandbox):
    adapter = make_adapter(tiny_model, tmp_path / "adapter")
    rows = lmeval.run_lm_eval("humaneval", 2, model_ref=tiny_model, adapter=adapter,
                              label="candidate", decoding=Decoding(), batch_size=1,
                              max_new_tokens=16, sandbox=sandbox)
    problems = load_humaneval(limit=2)
    assert [r["item_id"] for r in rows] == [p.task_id for p in problems]
    assert {r["engine"] for r in rows} == {"lm_eval/hf"} and {r["model"] for r in rows} == {"candidate"}
    assert {r["mode"] for r in rows} == {"completion"}
    # our HF engine, same merged adapter, greedy, same stop words: the same continuations
    tok = load_tokenizer(tiny_model)
    engine = HFEngine(load_model(tiny_model, adapter=adapter), tok, batch_size=1, max_new_tokens=16)
    ours = engine.generate([tok(p.prompt, add_special_tokens=False)["input_ids"] for p in problems],
                           stop=problems[0].stop_words)
    assert [r["output"] for r in rows] == [g.outputs[0] for g in ours]
    rescored = score_generations(problems, [[r["output"]] for r in rows], sandbox,
                                 model="candidate", engine="hf",
                                 prompt_hashes=[sha256_text(p.prompt) for p in problems])
    assert [r["status"] for r in rescored] == [r["status"] for r in rows]
