"""The task registry: what each task asks, and what the gate reads from its rows; a new task is
one class and one registration, and the gate and the eval plan pick it up."""

from __future__ import annotations

from dataclasses import dataclass

from conftest import make_cfg

from harness.eval.stage import plan
from harness.eval.tasks import TASKS, Task
from harness.gate.power import is_pass_fail
from harness.gate.stage import paired_values
from harness.io import write_jsonl
from harness.rundir import JUDGE_SCORES, MODELS, samples

SOURCE = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y * {i}\n\n" for i in range(10))


def records() -> list[dict]:
    """Two held-out source files and three held-out change requests, as mine leaves them."""
    files = [{"id": f"fim-{i}", "kind": "fim_source", "split": "test", "path": f"pkg/m{i}.py",
              "shas": [f"{i}" * 40], "content": SOURCE, "added_lines": list(range(1, 30))}
             for i in range(2)]
    asks = [{"id": f"c{i}", "kind": "commit", "split": "test", "instruction": "Fix it",
             "response": "done"} for i in range(3)]
    return files + asks


def test_the_tasks_in_the_order_the_models_are_asked_them():
    assert list(TASKS) == ["humaneval", "mbpp", "humaneval_chat", "mbpp_chat",
                           "humaneval_infill_single", "humaneval_infill_multi", "fim", "judge"]
    assert all(task.name == name for name, task in TASKS.items())


def test_the_plan_holds_the_enabled_tasks_with_items_in_registry_order(tmp_path):
    e = make_cfg(tmp_path, overrides=["eval.humaneval.limit=2", "eval.mbpp.enabled=false",
                                      "eval.humaneval.chat=true", "eval.humaneval_infill.limit=3",
                                      "eval.fim.holes=4", "eval.judge.samples=2"]).eval
    p = plan(e, records())
    assert list(p) == ["humaneval", "humaneval_chat", "humaneval_infill_single",
                       "humaneval_infill_multi", "fim", "judge"]
    assert [i.task_id for i in p["humaneval_chat"]] == ["HumanEval/0", "HumanEval/1"]
    assert len(p["fim"]) == 4 and [r["id"] for r in p["judge"]] == ["c0", "c1"]
    # no FIM sentinels: no infilling, and FIM holes of one line (next-line completion)
    left_to_right = plan(e, records(), left_to_right=True)
    assert list(left_to_right) == ["humaneval", "humaneval_chat", "fim", "judge"]
    assert all(h.middle.count("\n") == 1 for _, h in left_to_right["fim"])


def test_each_task_says_which_row_field_a_gate_metric_reads():
    he, fim, judge = TASKS["humaneval"], TASKS["fim"], TASKS["judge"]
    assert he.value({"passed": True}, "pass@1") is True
    assert fim.value({"edit_similarity": 0.5, "exact_match": 0.0}, "edit_similarity") == 0.5
    graded = {"criterion": "correctness", "score": 3, "weighted_score": 3.4}
    assert judge.value(graded, "correctness") == 3.4
    assert judge.value({**graded, "weighted_score": None}, "correctness") == 3
    assert judge.value(graded, "convention_adherence") is None  # another criterion's row
    # the models' answers and the judge's grades of them are different files
    assert (judge.samples, judge.scored) == ("answers", JUDGE_SCORES)


def test_pass_fail_metrics_are_the_ones_tasks_declare_zero_or_one():
    assert is_pass_fail("humaneval.pass@1 + mbpp.pass@1") and is_pass_fail("fim.exact_match")
    assert not is_pass_fail("fim.edit_similarity") and not is_pass_fail("judge.correctness")


@dataclass(frozen=True)
class Docstrings(Task):
    """A made-up task: write a function's docstring, scored by word overlap."""

    name: str = "docstrings"
    report = "match"
    fields = {"overlap": "edit_similarity"}  # noqa: RUF012 (a test's class attribute)
    pass_fail = frozenset()

    def plan(self, e, records, left_to_right):
        return [r for r in records if r["kind"] == "commit"]


def test_a_new_task_is_one_class_and_one_registration(monkeypatch, tmp_path):
    monkeypatch.setitem(TASKS, "docstrings", Docstrings())
    assert list(plan(make_cfg(tmp_path).eval, records()))[-1] == "docstrings"
    for label, overlap in zip(MODELS, (0.25, 0.75), strict=True):
        write_jsonl(tmp_path / samples("docstrings", label),
                    [{"item_id": f"c{i}", "edit_similarity": overlap} for i in range(3)])
    assert paired_values(tmp_path, "docstrings.overlap") == (
        [0.25] * 3, [0.75] * 3, {"base_only": 0, "candidate_only": 0})
    assert paired_values(tmp_path, "unregistered.pass@1") == ([], [], {})
