"""Every input of an eval result is in the eval stage's fingerprint, so changing one (a rubric's
text, a benchmark file) makes the stage run again instead of reporting stale scores."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import make_cfg

from harness import benchmarks
from harness.rundir import RECORDS, samples, write_stage
from harness.stages import fingerprint

ROOT = Path(__file__).resolve().parents[2]


def eval_fingerprint(tmp_path: Path, rubric: Path) -> str:
    cfg = make_cfg(tmp_path / "run", overrides=[f"judge.rubric={rubric}"])
    # the finished upstream stage, as the stage runner leaves it
    write_stage(tmp_path / "run" / "train", "train", "train-fp", {})
    return fingerprint(cfg, "eval")


def test_editing_the_rubric_changes_the_eval_fingerprint(tmp_path):
    rubric = tmp_path / "rubric.yaml"
    shutil.copy(ROOT / "judges" / "code_change.yaml", rubric)
    before = eval_fingerprint(tmp_path, rubric)
    assert eval_fingerprint(tmp_path, rubric) == before  # nothing changed: up to date

    text = rubric.read_text()
    rubric.write_text(re.sub(r"\nversion: \d+", "\nversion: 99", text).replace(
        "Does the response implement the requested change correctly?",
        "Does the response implement exactly the requested change?"))
    assert eval_fingerprint(tmp_path, rubric) != before


def test_editing_a_benchmark_file_changes_the_eval_fingerprint(tmp_path, monkeypatch):
    copy = tmp_path / "benchmarks"
    shutil.copytree(benchmarks.BENCHMARK_DIR, copy)
    monkeypatch.setattr(benchmarks, "BENCHMARK_DIR", copy)
    rubric = ROOT / "judges" / "code_change.yaml"
    before = eval_fingerprint(tmp_path, rubric)
    with open(copy / "humaneval.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    assert eval_fingerprint(tmp_path, rubric) != before


def test_an_edited_rubric_re_judges_the_same_answers_without_regenerating(tmp_path, tiny_model,
                                                                          caplog):
    """The eval reruns (its fingerprint changed) and the judge grades again with the new
    rubric, but the models' answers come from the last finished eval; a change that does
    alter them (a generation setting) regenerates them."""
    from conftest import make_adapter
    from judge_fake_server import FakeJudge, json_judge

    from harness.io import read_jsonl, write_jsonl
    from harness.stages import run_stage

    run = tmp_path / "run"
    write_jsonl(run / "mine" / RECORDS, [
        {"id": f"c{i}", "kind": "commit", "split": "test", "instruction": f"Add helper {i}",
         "response": f"+def helper_{i}(x):\n+    return x + {i}"} for i in range(2)])
    for name in ("mine", "train"):
        write_stage(run / name, name, name, {})
    make_adapter(tiny_model, run / "train" / "adapter")
    rubric = tmp_path / "rubric.yaml"
    shutil.copy(ROOT / "judges" / "code_change.yaml", rubric)
    only_the_judge = [
        f"model.name_or_path={tiny_model}", f"judge.rubric={rubric}", "judge.model=fake",
        "judge.output=json", "judge.max_tokens=50", "judge.reliability.enabled=false",
        "judge.pairwise=false", "eval.humaneval.enabled=false", "eval.mbpp.enabled=false",
        "eval.humaneval_infill.enabled=false", "eval.fim.enabled=false",
        "eval.sandbox.self_check=false", "eval.judge.max_new_tokens=8"]

    def evaluate(*overrides: str) -> tuple[list[dict], FakeJudge]:
        with FakeJudge(json_judge) as server:
            cfg = make_cfg(run, cache_dir=tmp_path / "cache", overrides=[
                *only_the_judge, f"judge.base_url='{server.base_url}'", *overrides])
            run_stage(cfg, "eval")
        return list(read_jsonl(run / "eval" / samples("answers", "candidate"))), server

    first, server = evaluate()
    assert len(server.requests) == 2 * 2 * 3  # items x models x criteria
    rubric.write_text(re.sub(r"\nversion: \d+", "\nversion: 99", rubric.read_text()).replace(
        "Does the response follow this repository's conventions",
        "Does the response follow the conventions of this repository"))
    with caplog.at_level("INFO", logger="harness.eval.stage"):
        again, server = evaluate()
    assert len(server.requests) == 2 * 2  # only the edited criterion's prompts are new
    assert again == first  # the very rows, timings included: not generated again
    assert "answers.candidate.jsonl: the same models, prompts and settings" in caplog.text
    assert "answers.candidate: 2 rows" not in caplog.text  # what _written logs when it generates

    caplog.clear()
    with caplog.at_level("INFO", logger="harness.eval.stage"):
        evaluate("eval.judge.max_new_tokens=9")
    assert "outputs are reused" not in caplog.text
    assert "answers.candidate: 2 rows" in caplog.text


def test_the_sandbox_code_is_part_of_the_eval_inputs(tmp_path):
    from harness.eval.stage import fingerprint_inputs

    code = fingerprint_inputs(make_cfg(tmp_path / "run"))["sandbox"]["code"]
    assert set(code) == {"execute.py", "forkserver.py"} and all(len(h) == 64 for h in code.values())
