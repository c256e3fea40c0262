"""HumanEval and MBPP in chat mode: what the model is asked, and how its reply becomes the
program the tests run."""

from __future__ import annotations

from harness.benchmarks import humaneval_rows, load_humaneval, load_mbpp
from harness.eval.chat_codegen import extract_code, humaneval_chat, mbpp_chat
from harness.sandbox.execute import Sandbox


def test_the_reply_is_code_up_to_the_closing_fence():
    assert extract_code("def f():\n    return 1\n```\nThis works because") == "def f():\n    return 1"
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"  # cut by max tokens


def test_a_whole_function_or_a_continued_body_both_run_against_the_tests():
    rows = humaneval_rows()[:12]
    problems = humaneval_chat(load_humaneval(12))
    assert problems[0].task == "humaneval_chat" and problems[0].mode == "chat"
    assert problems[0].entry_point == "has_close_elements"
    assert "```python\nfrom typing import List" in problems[0].question
    whole = [p.program_for(r["prompt"] + r["canonical_solution"] + "\n```\nExplanation")
             for p, r in zip(problems, rows, strict=True)]
    body = [p.program_for(r["canonical_solution"]) for p, r in zip(problems, rows, strict=True)]
    wrong = [p.program_for(f"def {p.entry_point}(*args):\n    return None\n") for p in problems]
    box = Sandbox(timeout_s=10, workers=2)
    assert [r.status for r in box.run_many(whole + body)] == ["passed"] * 24
    assert not any(r.passed for r in box.run_many(wrong))
    # a whole function that drops the prompt's imports still gets them
    assert whole[0].startswith("from typing import List\n")


def test_mbpp_asks_with_its_description_and_three_tests():
    problems = mbpp_chat(load_mbpp(limit=6))
    references = [p.reference for p in load_mbpp(limit=6)]
    assert problems[0].task_id == "MBPP/11" and problems[0].question.count("assert ") == 3
    assert problems[0].question.startswith("Write a python function to remove first and last")
    box = Sandbox(timeout_s=10, workers=2)
    programs = [p.program_for(ref + "\n```") for p, ref in zip(problems, references, strict=True)]
    assert all(r.passed for r in box.run_many(programs))
