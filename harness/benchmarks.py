"""HumanEval and MBPP, loaded from the vendored copies in datasets/benchmarks/.

The protocol follows bigcode-evaluation-harness (tasks/humaneval.py, tasks/mbpp.py) so that
our numbers are comparable with published ones:

- HumanEval: the prompt is ``prompt.strip()``; the program is
  ``prompt + continuation + "\\n" + "\\n" + test + "\\n" + "check(entry_point)"``.
- MBPP: the prompt is an InCoder-style docstring holding the description and the first test;
  the program is ``prompt + continuation + "\\n" + asserts``. Unlike bigcode we also run
  ``test_setup_code`` (between the code and the asserts), because MBPP 367 and 927 cannot
  pass without it; for every other row the program is byte-identical to bigcode's.
- A generation is cut at the first stop word of the task.

The flow evaluation uses is::

    code = postprocess(problem, continuation)   # prompt + continuation cut at a stop word
    result = sandbox.run(problem.program(code))

``problem.reference`` is a full solution in the same shape as ``code`` (HumanEval: the raw
prompt + canonical_solution; MBPP: the reference code), so ``problem.program(problem.reference)``
must pass; that is how the sandbox is checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "datasets" / "benchmarks"

# sha256 of the files as shipped (see datasets/benchmarks/README.md); checked on every load so a
# truncated or edited copy can never silently change the scores.
SHA256 = {
    "humaneval.jsonl": "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
    "mbpp.jsonl": "143559fa164408d45cab058238471288b0e447507ce55db3057c56113d9dccb4",
}

HUMANEVAL_STOP_WORDS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")
MBPP_STOP_WORDS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")

# Standard MBPP splits by task_id (Austin et al. 2021); "test" is the 500 everyone reports.
MBPP_SPLITS = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    ``prompt`` is what the model is asked to continue; ``test`` is the code appended after the
    solution; ``reference`` is a known-correct full solution (same shape as ``postprocess``'s
    output). ``task_id`` is unique across tasks: "HumanEval/0", "MBPP/11".
    """

    task: str
    task_id: str
    prompt: str
    stop_words: tuple[str, ...]
    reference: str
    test: str
    mode: str = "completion"  # the bigcode prompt continued as is (chat mode: chat_codegen.py)

    def program(self, completion: str) -> str:
        """The executable program for a full solution ``completion``.

        ``completion`` must include the prompt, i.e. be ``postprocess(self, continuation)`` or
        ``self.reference``; the stripped prompt ends mid-function, so the continuation alone is
        not a program.
        """
        return completion + "\n" + self.test

    def program_for(self, generation: str) -> str:
        """The program that scores a raw generation: bigcode post-processing, then the tests."""
        return self.program(postprocess(self, generation))


def postprocess(problem: Problem, generation: str) -> str:
    """Cut ``generation`` at the first stop word and prepend the prompt.

    ``generation`` is the text the model produced *after* ``problem.prompt`` (not echoing it),
    which is what bigcode's ``generation[len(prompt):]`` recovers. Stop words are searched only
    in the generation because the prompt itself contains some (e.g. "\\ndef").
    """
    cut = min((i for w in problem.stop_words if (i := generation.find(w)) != -1),
              default=len(generation))
    return problem.prompt + generation[:cut]


def _read_rows(name: str) -> list[dict]:
    path = BENCHMARK_DIR / name
    fix = (f"Re-copy it from shared/benchmarks/{name} into {BENCHMARK_DIR}/ "
           "(see datasets/benchmarks/README.md); do not edit it.")
    if not path.is_file():
        raise HarnessError(f"Benchmark file missing: {path}. {fix}")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != SHA256[name]:
        raise HarnessError(f"Benchmark file {path} is not the vendored copy: sha256 is {actual}, "
                           f"expected {SHA256[name]}. {fix}")
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def humaneval_rows() -> list[dict]:
    """The raw HumanEval rows (task_id, prompt, canonical_solution, test, entry_point)."""
    return _read_rows("humaneval.jsonl")


def load_humaneval(limit: int | None = None) -> list[Problem]:
    """All 164 HumanEval problems (or the first ``limit``), in dataset order."""
    problems = [
        Problem(
            task="humaneval",
            task_id=row["task_id"],
            prompt=row["prompt"].strip(),
            stop_words=HUMANEVAL_STOP_WORDS,
            reference=row["prompt"] + row["canonical_solution"],
            test="\n" + row["test"] + "\n" + f"check({row['entry_point']})",
        )
        for row in humaneval_rows()
    ]
    return problems[:limit]


def load_mbpp(limit: int | None = None, split: str = "test") -> list[Problem]:
    """MBPP problems of ``split`` ("prompt", "test", "validation", "train" or "all").

    Execution order is code, then test_setup_code, then the asserts: the setup code of 367 and
    927 builds trees with the ``Node`` class the solution defines.
    """
    if split != "all" and split not in MBPP_SPLITS:
        raise HarnessError(f"Unknown MBPP split {split!r}; use one of {[*MBPP_SPLITS, 'all']}.")
    problems = []
    for row in _read_rows("mbpp.jsonl"):
        if split != "all" and row["task_id"] not in MBPP_SPLITS[split]:
            continue
        asserts = "\n".join(row["test_list"])
        setup = row["test_setup_code"]
        problems.append(Problem(
            task="mbpp",
            task_id=f"MBPP/{row['task_id']}",
            prompt=f'"""\n{row["text"]}\n{row["test_list"][0]}\n"""\n',
            stop_words=MBPP_STOP_WORDS,
            reference=row["code"],
            test=f"{setup}\n{asserts}" if setup else asserts,
        ))
    return problems[:limit]
