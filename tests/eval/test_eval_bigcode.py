"""bigcode-evaluation-harness interop: its generations and results files round-trip, and its
CLI scores our generations when it is installed."""

from __future__ import annotations

import json

import pytest

from harness.benchmarks import load_humaneval, load_mbpp, postprocess
from harness.errors import HarnessError
from harness.eval import bigcode
from harness.eval.records import row
from harness.eval.runner import score_generations
from harness.sandbox.execute import Sandbox


def _rows(problems, outputs):
    return [row(p.task, p.task_id, "base", "h", out, sample=s)
            for p, outs in zip(problems, outputs, strict=True) for s, out in enumerate(outs)]


def test_generations_files_round_trip_through_the_bigcode_format(tmp_path):
    problems = load_mbpp(limit=3)
    outputs = [[f"def f():\n    return {i}\nassert f() == {i}", f"x = {i}"] for i in range(3)]
    gens = bigcode.to_generations(problems, _rows(problems, outputs))
    assert gens[0][0] == problems[0].prompt + "def f():\n    return 0"  # cut at "\nassert"
    path = bigcode.write_generations(tmp_path / "generations.json", gens)
    assert json.loads(path.read_text()) == gens  # what bigcode's --load_generations_path reads
    back = bigcode.from_generations(problems, bigcode.read_generations(path))
    assert [[postprocess(p, o) for o in outs] for p, outs in zip(problems, back, strict=True)] == gens


def test_a_bigcode_generations_file_is_scored_like_our_own(tmp_path):
    problems = load_humaneval(limit=2)
    right = [p.reference[p.reference.find(p.prompt) + len(p.prompt):] for p in problems]
    gens = [[p.prompt + r, p.prompt + "\n    return None\n"] for p, r in zip(problems, right, strict=True)]
    outputs = bigcode.from_generations(problems, gens)
    rows = score_generations(problems, outputs, Sandbox(), model="base", engine="bigcode-file",
                             prompt_hashes=["h"] * 2)
    assert [r["passed"] for r in rows] == [True, False, True, False]


def test_foreign_or_malformed_files_are_refused(tmp_path):
    problems = load_humaneval(limit=1)
    with pytest.raises(HarnessError, match="does not start with the bigcode prompt"):
        bigcode.from_generations(problems, [["def unrelated(): pass"]])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"humaneval": ["x"]}))
    with pytest.raises(HarnessError, match="not a bigcode generations file"):
        bigcode.read_generations(bad)


def test_evaluation_results_round_trip(tmp_path):
    path = bigcode.write_evaluation_results(tmp_path / "evaluation_results.json",
                                            {"humaneval": {"pass@1": 0.25, "pass@10": 0.5}},
                                            {"n_samples": 10, "temperature": 0.8})
    data = json.loads(path.read_text())
    assert data["config"]["n_samples"] == 10  # bigcode keeps its args under "config"
    assert bigcode.read_evaluation_results(path) == {"humaneval": {"pass@1": 0.25, "pass@10": 0.5}}


def test_a_missing_bigcode_checkout_is_a_clear_error(tmp_path):
    gens = bigcode.write_generations(tmp_path / "g.json", [["x"]])
    with pytest.raises(HarnessError, match=r"main\.py not found"):
        bigcode.run_bigcode("humaneval", gens, tmp_path / "out.json", 1, tmp_path / "main.py")


def test_bigcode_scores_our_generations_when_installed(tmp_path):
    main = bigcode.find_main(None)
    if main is None:
        pytest.skip("bigcode-evaluation-harness is not installed (not on PyPI)")
    problems = load_humaneval(limit=2)
    right = [p.reference[p.reference.find(p.prompt) + len(p.prompt):] for p in problems]
    gens = bigcode.write_generations(tmp_path / "g.json", [[p.prompt + r] for p, r in
                                                           zip(problems, right, strict=True)])
    results = bigcode.run_bigcode("humaneval", gens, tmp_path / "evaluation_results.json", 1, main)
    assert results["pass@1"] == 1.0


def test_score_generations_scores_a_bigcode_file_in_our_sandbox(tmp_path, harness_cache):
    from conftest import make_cfg

    problems = load_humaneval(limit=3)
    right = [p.reference[p.reference.find(p.prompt) + len(p.prompt):] for p in problems]
    path = bigcode.write_generations(tmp_path / "generations_humaneval.json", [
        [p.prompt + r, p.prompt + "\n    raise ValueError\n"] for p, r in zip(problems, right, strict=True)])
    cfg = make_cfg(tmp_path / "run", overrides=[f"eval.bigcode.generations={path}"],
                   cache_dir=harness_cache)
    metrics = bigcode.score_file(cfg)
    assert metrics == {"pass@1": 0.5}  # pass@10/100 need 10/100 samples per problem
    results = bigcode.read_evaluation_results(tmp_path / "run" / "evaluation_results.json")
    assert results == {"humaneval": {"pass@1": 0.5}}
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False] * 3 and rows[0]["item_id"] == "HumanEval/0"
