"""HumanEval infilling: holes cut from the canonical solutions, filled with each model's own FIM
tokens, scored by running HumanEval's tests on the filled-in program.

In the spirit of Bavarian et al. 2022 (single-line and multi-line infilling): per problem and
span kind one hole of whole lines inside the canonical solution, drawn with a fixed seed, so
base and candidate fill exactly the same holes. ``single``: one non-blank line; ``multi``: 2 to
``max_lines`` consecutive lines (problems whose solution has a single line have no multi-line
hole). The reference program (the expected middle put back) is the canonical solution with
HumanEval's tests, so it passes by construction; the tests check that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.benchmarks import humaneval_rows, load_humaneval
from harness.errors import HarnessError

TASKS = {"single": "humaneval_infill_single", "multi": "humaneval_infill_multi"}


@dataclass(frozen=True)
class InfillItem:
    task: str
    task_id: str
    prefix: str  # the HumanEval prompt and the solution's lines above the hole
    middle: str  # the expected lines, newline-terminated
    suffix: str  # the solution's lines below the hole
    test: str  # what follows the solution (HumanEval's tests and check call)

    @property
    def single_line(self) -> bool:
        return self.task == TASKS["single"]

    def program(self, middle: str) -> str:
        return self.prefix + middle + self.suffix + "\n" + self.test

    def program_for(self, generation: str) -> str:
        return self.program(clean_middle(generation, self.single_line))


def clean_middle(generation: str, single_line: bool) -> str:
    """The model's middle as whole lines: the first line only for single-line holes."""
    if single_line:
        generation = generation.split("\n", 1)[0]
    return generation if generation.endswith("\n") else generation + "\n"


def load_infill(span: str, seed: int, max_lines: int = 5, limit: int | None = None) -> list[InfillItem]:
    """One hole per HumanEval problem (of the first ``limit``) for ``span`` in TASKS."""
    if span not in TASKS:
        raise HarnessError(f"unknown infill span {span!r}; use one of {sorted(TASKS)} "
                           "(eval.humaneval_infill.spans).")
    if max_lines < 2:
        raise HarnessError("eval.humaneval_infill.max_lines must be at least 2 (multi-line holes).")
    items = []
    for row, problem in list(zip(humaneval_rows(), load_humaneval(), strict=True))[:limit]:
        solution = row["canonical_solution"]
        lines = (solution if solution.endswith("\n") else solution + "\n").splitlines(keepends=True)
        filled = [i for i, line in enumerate(lines) if line.strip()]
        if span == "multi":
            filled = [i for i in filled if i + 1 < len(lines)]
        if not filled:
            continue
        rng = random.Random(f"{seed}:{row['task_id']}:{span}")
        start = rng.choice(filled)
        size = 1 if span == "single" else rng.randint(2, min(max_lines, len(lines) - start))
        items.append(InfillItem(
            task=TASKS[span], task_id=row["task_id"],
            prefix=row["prompt"] + "".join(lines[:start]),
            middle="".join(lines[start:start + size]),
            suffix="".join(lines[start + size:]), test=problem.test))
    return items
