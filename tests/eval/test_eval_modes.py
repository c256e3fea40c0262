"""How each model is asked, recorded in every row: HumanEval/MBPP in completion and chat mode,
and held-out completion left to right for a model without FIM sentinels."""

from __future__ import annotations

import pytest
from conftest import make_cfg
from test_eval_stage import SMALL, rows, upstream

from harness.eval import stage
from harness.rundir import METRICS


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model, harness_cache):
    run = tmp_path_factory.mktemp("run")
    upstream(run, tiny_model)
    cfg = make_cfg(run, overrides=[*SMALL, "model.fim=left_to_right", "eval.humaneval.chat=true",
                                   "eval.mbpp.chat=true", "eval.chat_max_new_tokens=16",
                                   "eval.fim.batch_size=3"],
                   cache_dir=harness_cache)
    out = run / "eval.partial"
    return out, stage.run(cfg, out)


def test_chat_mode_runs_beside_completion_mode_on_the_same_problems(evaluated):
    out, summary = evaluated
    for task, chat in (("humaneval", "humaneval_chat"), ("mbpp", "mbpp_chat")):
        for label in ("base", "candidate"):
            done, asked = rows(out, f"{task}.{label}"), rows(out, f"{chat}.{label}")
            assert {r["mode"] for r in done} == {"completion"} and {r["mode"] for r in asked} == {"chat"}
            assert [r["item_id"] for r in done] == [r["item_id"] for r in asked]
            assert all(r["status"] in ("passed", "failed", "timeout", "error") for r in asked)
        assert "pass@1" in summary[chat]["base"]


def test_a_model_without_sentinels_predicts_the_next_line_and_skips_infilling(evaluated):
    out, _ = evaluated
    import json

    settings = json.loads((out / METRICS).read_text())["settings"]
    assert settings["modes"]["fim"] == "left_to_right" and settings["fim_tokens"] == "left_to_right"
    assert settings["modes"]["humaneval_chat"] == "chat"
    assert settings["batch_sizes"] == {"fim": 3}  # its own batch size, recorded
    assert not list((out / "samples").glob("humaneval_infill_*"))
    fim = rows(out, "fim.base")
    assert len(fim) == 3 and {r["mode"] for r in fim} == {"left_to_right"}
    assert all(r["expected"].count("\n") == 1 for r in fim)  # single-line holes
