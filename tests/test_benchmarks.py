"""The vendored benchmarks load as the bigcode-evaluation-harness protocol expects."""

from __future__ import annotations

import shutil

import pytest

from harness import benchmarks
from harness.benchmarks import load_humaneval, load_mbpp, postprocess
from harness.errors import HarnessError


def test_humaneval_has_164_problems_with_stripped_prompts():
    problems = load_humaneval()
    assert len(problems) == 164
    first = problems[0]
    assert first.task_id == "HumanEval/0"
    assert first.prompt.endswith('"""') and first.prompt == first.prompt.strip()
    assert first.reference.startswith(first.prompt)  # raw prompt + canonical_solution
    assert first.test.endswith("\ncheck(has_close_elements)")
    assert len(load_humaneval(limit=5)) == 5


def test_mbpp_splits_follow_task_ids():
    ids = {split: [int(p.task_id.split("/")[1]) for p in load_mbpp(split=split)]
           for split in ("prompt", "test", "validation", "train", "all")}
    assert ids["test"] == list(range(11, 511))  # the 500 problems everyone reports
    assert ids["prompt"] == list(range(1, 11))
    assert len(ids["validation"]) == 90 and len(ids["train"]) == 374 and len(ids["all"]) == 974
    assert len(load_mbpp(limit=7)) == 7
    with pytest.raises(HarnessError, match="Unknown MBPP split"):
        load_mbpp(split="dev")


def test_mbpp_prompt_is_a_docstring_with_the_first_test():
    problem = load_mbpp(limit=1)[0]
    assert problem.task_id == "MBPP/11"
    assert problem.prompt == (
        '"""\nWrite a python function to remove first and last occurrence of a given character '
        "from the string.\nassert remove_Occ(\"hello\",\"l\") == \"heo\"\n\"\"\"\n"
    )


def test_program_is_solution_then_tests_as_bigcode_builds_it():
    he = load_humaneval(limit=1)[0]
    assert he.program("CODE").startswith("CODE\n\n\n\nMETADATA")
    mbpp = load_mbpp(limit=1)[0]
    assert mbpp.program("CODE") == "CODE\n" + mbpp.test
    assert mbpp.test.startswith("assert remove_Occ")


def test_mbpp_setup_code_goes_between_code_and_asserts():
    (p367,) = [p for p in load_mbpp(split="all") if p.task_id == "MBPP/367"]
    program = p367.program(p367.reference)
    assert program.index("class Node") < program.index("root = Node(1)") < program.index("assert")


def test_postprocess_cuts_the_generation_at_the_first_stop_word():
    problem = load_humaneval(limit=1)[0]
    generation = "\n    return False\n\n\ndef helper():\n    pass\nif True:\n    print(1)"
    assert postprocess(problem, generation) == problem.prompt + "\n    return False\n\n"
    # The stripped prompt itself contains "\ndef": only the generation is searched.
    assert "\ndef" in problem.prompt
    assert postprocess(problem, "\n    return True") == problem.prompt + "\n    return True"

    mbpp = load_mbpp(limit=1)[0]
    code = "def remove_Occ(s, ch):\n    return s\nassert remove_Occ('a', 'a') == 'a'\n"
    assert postprocess(mbpp, code) == mbpp.prompt + "def remove_Occ(s, ch):\n    return s"
    assert postprocess(mbpp, 'x = 1\n"""more prose') == mbpp.prompt + "x = 1"


def test_a_tampered_copy_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "benchmarks"
    shutil.copytree(benchmarks.BENCHMARK_DIR, copy)
    path = copy / "mbpp.jsonl"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"assert", b"assert not", 1))
    monkeypatch.setattr(benchmarks, "BENCHMARK_DIR", copy)

    assert len(load_humaneval()) == 164  # the untouched file still loads
    with pytest.raises(HarnessError) as info:
        load_mbpp()
    message = str(info.value)
    assert "mbpp.jsonl" in message and benchmarks.SHA256["mbpp.jsonl"] in message
    assert "shared/benchmarks" in message


def test_a_missing_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks, "BENCHMARK_DIR", tmp_path)
    with pytest.raises(HarnessError, match=r"missing.*humaneval\.jsonl.*shared/benchmarks"):
        load_humaneval()
