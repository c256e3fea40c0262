"""The eval tasks, registered in one place: the eval stage asks and scores them, the gate and
the report read their rows, all through this registry (the interface is in base.py).

Adding a task: a ``Task`` subclass in its own module (items, prompts, scoring, what the gate
reads from a row, the report section it belongs to) and one entry below. The order is the
order the models are asked the tasks in.
"""

from __future__ import annotations

from harness.eval.tasks.base import Context, Task
from harness.eval.tasks.execution import Chat, Completion, Infill
from harness.eval.tasks.fim import Fim
from harness.eval.tasks.judge import Judge

TASKS: dict[str, Task] = {t.name: t for t in (
    Completion("humaneval"), Completion("mbpp"),
    Chat("humaneval"), Chat("mbpp"),
    Infill("single"), Infill("multi"),
    Fim(),
    Judge(),
)}


def pass_fail_fields() -> frozenset[str]:
    """Every gate field some task declares 0/1 per item (pass@1, exact_match, ...)."""
    return frozenset().union(*(t.pass_fail for t in TASKS.values()))


__all__ = ["TASKS", "Context", "Task", "pass_fail_fields"]
