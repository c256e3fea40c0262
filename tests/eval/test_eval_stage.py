"""The eval stage end to end on the tiny model: every task, both models, one row schema,
resumable per (task, model) file, and refusing results whose prompts differ.

Upstream outputs are made directly (records.jsonl and a real LoRA adapter with non-zero
weights), so these tests exercise eval alone, quickly.
"""

from __future__ import annotations

import json

import pytest
from conftest import make_adapter, make_cfg

from harness.errors import HarnessError
from harness.eval import stage
from harness.eval.records import FIELDS
from harness.io import read_jsonl, write_jsonl
from harness.rundir import METRICS, RECORDS, SAMPLES, samples, write_stage

SOURCE = "".join(f"def f{i}(x):\n    y = x * {i}\n    return y + {i}\n\n\n" for i in range(8))
SMALL = ["eval.humaneval.limit=2", "eval.mbpp.limit=2", "eval.humaneval_infill.limit=2",
         "eval.humaneval_infill.max_new_tokens=12", "eval.max_new_tokens=24", "eval.batch_size=2",
         "eval.fim.holes=3", "eval.fim.max_new_tokens=8", "eval.judge.enabled=false",
         "eval.sandbox.self_check=false", "data.format.max_length=256"]


def upstream(run, tiny_model) -> None:
    """What mine and train leave behind, as far as eval reads it."""
    records = [{"id": f"fim-{i}", "kind": "fim_source", "split": "test", "path": f"pkg/m{i}.py",
                "shas": [f"{i}" * 40], "content": SOURCE, "added_lines": list(range(1, 30))}
               for i in range(2)]
    write_jsonl(run / "mine" / RECORDS, records)
    for name in ("mine", "train"):
        write_stage(run / name, name, name, {})
    make_adapter(tiny_model, run / "train" / "adapter")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model, harness_cache):
    run = tmp_path_factory.mktemp("run")
    upstream(run, tiny_model)
    cfg = make_cfg(run, overrides=[*SMALL, "eval.n_samples=2", "eval.temperature=0.8",
                                   "eval.pass_at_k=[1,2]"], cache_dir=harness_cache)
    out = run / "eval.partial"
    summary = stage.run(cfg, out)
    return cfg, out, summary


def rows(out, name):
    return list(read_jsonl(out / SAMPLES / f"{name}.jsonl"))


def test_every_task_writes_both_models_in_one_schema(evaluated):
    _, out, summary = evaluated
    tasks = ["humaneval", "mbpp", "humaneval_infill_single", "humaneval_infill_multi"]
    for task in [*tasks, "fim"]:
        for label in ("base", "candidate"):
            got = rows(out, f"{task}.{label}")
            assert got and all(set(r) == set(FIELDS) for r in got), task
            assert {r["model"] for r in got} == {label} and {r["engine"] for r in got} == {"hf"}
    for task in tasks:  # two samples per item at temperature 0.8, each executed
        got = rows(out, f"{task}.base")
        assert [r["sample"] for r in got] == [0, 1] * (len(got) // 2)
        assert all(r["status"] in ("passed", "failed", "timeout") for r in got)
        assert summary[task]["base"]["samples"] == 2 * summary[task]["base"]["n"] == len(got)
        assert {"pass@1", "pass@2"} <= set(summary[task]["candidate"])
    assert {r["item_id"] for r in rows(out, "humaneval.base")} == {"HumanEval/0", "HumanEval/1"}
    fim = rows(out, "fim.base")
    assert len(fim) == 3 and all(r["exact_match"] in (0.0, 1.0) and r["passed"] is None for r in fim)


def test_the_noise_floor_is_the_base_model_again_at_another_batch_size(evaluated):
    _, out, _ = evaluated
    floor = json.loads((out / METRICS).read_text())["noise_floor"]  # on by default
    assert set(floor) == {"humaneval", "mbpp"}  # the pass/fail benchmarks the gate pools
    for task in floor:
        again, first = rows(out, f"{task}.base_noise"), rows(out, f"{task}.base")
        assert [r["prompt_hash"] for r in again] == [r["prompt_hash"] for r in first]
        last = {r["item_id"]: r["passed"] for r in first}  # per problem, its last sample
        flips = sum(1 for r in again if r["sample"] == 1 and r["passed"] != last[r["item_id"]])
        assert floor[task] == {"n": 2, "flips": flips, "flip_rate": flips / 2}


def test_both_models_get_identical_prompts_and_settings_are_recorded(evaluated):
    _, out, _ = evaluated
    for task in ("humaneval", "humaneval_infill_multi", "fim"):
        base = {(r["item_id"], r["sample"]): r["prompt_hash"] for r in rows(out, f"{task}.base")}
        cand = {(r["item_id"], r["sample"]): r["prompt_hash"] for r in rows(out, f"{task}.candidate")}
        assert base == cand
    outputs = [r["output"] for r in rows(out, "humaneval.base")]
    assert outputs != [r["output"] for r in rows(out, "humaneval.candidate")]  # the adapter acts
    metrics = json.loads((out / METRICS).read_text())
    s = metrics["settings"]
    assert s["engine"] == "hf" and s["batch_size"] == 2 and s["runner"] == "harness"
    assert s["sampling"] == {"n": 2, "temperature": 0.8, "top_p": 0.95, "seed": 1234}
    assert s["stop_words"]["humaneval"][:2] == ["\nclass", "\ndef"]
    assert set(s["prompts_sha256"]) == {"humaneval", "mbpp", "humaneval_infill_single",
                                        "humaneval_infill_multi", "fim"}
    assert metrics["sandbox"]["mode"] in ("bwrap", "unshare", "rlimits")
    assert "missing" in metrics["sandbox"] and "guarantees" in metrics["sandbox"]


def test_generations_and_results_are_written_in_bigcode_format(evaluated):
    _, out, summary = evaluated
    gens = json.loads((out / "bigcode" / "generations_humaneval.candidate.json").read_text())
    assert len(gens) == 2 and all(len(g) == 2 for g in gens)
    assert gens[0][0].startswith('from typing import List')  # prompt + completion
    results = json.loads((out / "bigcode" / "evaluation_results.base.json").read_text())
    assert results["humaneval"]["pass@1"] == summary["humaneval"]["base"]["pass@1"]
    assert results["config"]["n_samples"] == 2


def test_a_rerun_reuses_finished_files_and_redoes_only_the_missing_one(evaluated, caplog):
    cfg, out, summary = evaluated
    kept = out / samples("mbpp", "base")
    before = kept.read_bytes()
    (out / samples("humaneval", "candidate")).unlink()
    caplog.set_level("INFO")
    again = stage.run(cfg, out)
    assert "reusing mbpp.base.jsonl" in caplog.text
    assert "reusing humaneval.candidate.jsonl" not in caplog.text
    assert kept.read_bytes() == before
    # same seeds: the regenerated samples are the same ones
    assert again["humaneval"] == summary["humaneval"]


def test_a_later_run_takes_the_base_outputs_from_the_cache_and_makes_the_candidates(
        tmp_path, tiny_model, harness_cache, caplog):
    """Another adapter (a sweep, a seed, a negative control) does not change what the base model
    says: a second run copies the base files an earlier run kept, and generates only the
    candidate's. A changed eval setting makes a new key, and the base runs again."""
    cache = tmp_path / "cache"  # this test's own: nothing kept by other tests
    few = [*SMALL, "eval.mbpp.enabled=false", "eval.humaneval_infill.enabled=false"]
    caplog.set_level("INFO")
    outs = []
    for i, extra in enumerate([[], [], ["eval.fim.holes=2"]]):
        run = tmp_path / f"run{i}"
        upstream(run, tiny_model)
        make_adapter(tiny_model, run / "train" / "adapter", seed=1 + i)
        cfg = make_cfg(run, overrides=[*few, *extra, f"cache_dir={cache}",
                                       f"model.name_or_path={tiny_model}"])
        caplog.clear()
        stage.run(cfg, run / "eval.partial")
        outs.append((run / "eval.partial", caplog.text))
    (first, _), (second, log2), (_, log3) = outs
    for task in ("humaneval", "fim"):
        name = samples(task, "base")
        assert f"{name.name}: the base model's outputs" in log2
        assert (second / name).read_bytes() == (first / name).read_bytes()
        assert f"{task}.candidate: " in log2  # generated: its adapter is another one
    assert rows(second, "humaneval.candidate") != rows(first, "humaneval.candidate")
    assert "the base model's outputs" not in log3 and "fim.base: 2 rows" in log3


def test_results_from_different_prompts_are_refused(evaluated):
    cfg, out, _ = evaluated
    path = out / samples("mbpp", "candidate")
    original = path.read_text()
    tampered = list(read_jsonl(path))
    tampered[0]["prompt_hash"] = "0" * 64
    write_jsonl(path, tampered)
    try:
        with pytest.raises(HarnessError, match="mbpp: base and candidate were not given the same"):
            stage.run(cfg, out)
    finally:
        path.write_text(original)


def test_bad_choices_are_refused_before_any_work(tmp_path, tiny_model, harness_cache):
    for override, message in (("eval.runner=bogus", "eval.runner"),
                              ("eval.scorer=bigcode", "bigcode-evaluation-harness is not installed"),
                              ("eval.n_samples=3", "greedy decoding gives 3 identical samples")):
        cfg = make_cfg(tmp_path / "r", overrides=[*SMALL, override], cache_dir=harness_cache)
        with pytest.raises(HarnessError, match=message):
            stage.run(cfg, tmp_path / "out")


def test_lm_eval_runner_and_an_openai_endpoint_fill_the_same_files(tmp_path, tiny_model,
                                                                   harness_cache):
    """runner=lm_eval for HumanEval/MBPP; engine=openai (a loopback server over the base model
    and the adapter) for the rest: same files, same schema, what ran is recorded."""
    run = tmp_path / "run"
    upstream(run, tiny_model)
    cfg = make_cfg(run, overrides=[*SMALL, "eval.runner=lm_eval", "eval.engine=openai",
                                   "eval.humaneval.limit=1", "eval.mbpp.limit=1",
                                   "eval.humaneval_infill.limit=1",
                                   "eval.humaneval_infill.spans=[multi]", "eval.fim.holes=2"],
                   cache_dir=harness_cache)
    summary = stage.run(cfg, run / "eval.partial")
    out = run / "eval.partial"
    for label in ("base", "candidate"):
        assert {r["engine"] for r in rows(out, f"humaneval.{label}")} == {"lm_eval/hf"}
        assert {r["engine"] for r in rows(out, f"humaneval_infill_multi.{label}")} == {"openai"}
        assert len(rows(out, f"fim.{label}")) == 2
    assert summary["mbpp"]["candidate"]["n"] == 1
    settings = json.loads((out / METRICS).read_text())["settings"]
    assert settings["runner"] == "lm_eval" and settings["engine"] == "openai"
    assert settings["base_url"] == "loopback harness serve"
