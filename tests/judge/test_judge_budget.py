"""The eval stage's judge step (run_judge) with cost accounting and a budget that stops cleanly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import make_cfg
from judge_fake_server import FakeJudge, json_judge

from harness.errors import HarnessError
from harness.eval.judging import run_judge
from harness.io import read_jsonl

RUBRIC = Path(__file__).resolve().parents[2] / "judges" / "code_change.yaml"
ITEMS = [{"id": f"c{i}", "instruction": f"Implement change {i}", "response": f"+line {i}"}
         for i in range(2)]
ANSWERS = {"base": [{"output": "def f(): pass"}, {"output": "GOOD base"}],
           "candidate": [{"output": "GOOD candidate"}, {"output": "def g(): pass"}]}
CALLS = 2 * 3 * 2 + 2 * 3 * 2  # (items x criteria) x (base, candidate) + x (both orders)
PER_CALL = 100 * 1.0 / 1000 + 10 * 2.0 / 1000  # the fake's usage (100 + 10 tokens) at these prices


def cfg_for(tmp_path, url: str, *overrides: str):
    return make_cfg(tmp_path / "run", cache_dir=tmp_path / "cache", overrides=[
        f"judge.base_url='{url}'", "judge.model=fake", "judge.output=json", "judge.max_tokens=50",
        "judge.max_concurrency=1", "judge.price_per_1k_prompt_tokens=1.0",
        "judge.price_per_1k_completion_tokens=2.0", "judge.reliability.enabled=false", *overrides])


def test_the_budget_stops_cleanly_and_a_rerun_resumes_from_the_cache(tmp_path):
    out = tmp_path / "eval.partial"
    with FakeJudge(json_judge) as server:
        cfg = cfg_for(tmp_path, server.base_url, "judge.budget_usd=1.5")
        with pytest.raises(HarnessError, match=r"budget of \$1.5 for this run .* Stopped cleanly"):
            run_judge(cfg.judge, cfg.model, cfg.cache_dir, out, "unused", ITEMS, ANSWERS)
    paid = len(server.requests)
    assert 0 < paid < CALLS
    assert not (out / "samples").exists()  # nothing half-written

    with FakeJudge(json_judge) as server:
        cfg = cfg_for(tmp_path, server.base_url, "judge.budget_usd=null")
        summary = run_judge(cfg.judge, cfg.model, cfg.cache_dir, out, "unused", ITEMS, ANSWERS)
    assert len(server.requests) == CALLS - paid  # what was paid for is not paid again
    usage = summary["usage"]
    assert usage["cached_calls"] == paid and usage["calls"] == CALLS - paid
    assert usage["spent_usd"] == pytest.approx(PER_CALL * (CALLS - paid))
    assert usage["prompt_tokens"] == 100 * (CALLS - paid)
    total = sum(summary[k]["cost_usd"] for k in ("base", "candidate", "pairwise"))
    assert total == pytest.approx(PER_CALL * CALLS)  # every judgement's cost, cached or not

    assert summary["rubric"] == {"name": "code_change", "version": "3"}
    assert summary["base"]["criteria"]["correctness"]["mean"] == 3.5  # GOOD scores 5, else 2
    assert summary["pairwise"]["criteria"]["correctness"]["wins"] == 1
    assert summary["pairwise"]["criteria"]["correctness"]["losses"] == 1
    rows = list(read_jsonl(out / "samples" / "judge_scores.candidate.jsonl"))
    assert len(rows) == 6 and all(r["model"] == "candidate" and r["rationale"] for r in rows)
    assert len(list(read_jsonl(out / "samples" / "judge_pairwise.jsonl"))) == 6


@pytest.mark.parametrize(("override", "message"), [
    ("judge.budget_usd=-1", "budget_usd"),
    ("judge.output=xml", "judge.output"),
    ("judge.max_concurrency=0", "max_concurrency"),
])
def test_bad_judge_settings_are_refused_before_any_call(tmp_path, override, message):
    with FakeJudge(json_judge) as server, pytest.raises(HarnessError, match=message):
        cfg = cfg_for(tmp_path, server.base_url, override)
        run_judge(cfg.judge, cfg.model, cfg.cache_dir, tmp_path / "out", "unused", ITEMS, ANSWERS)
    assert server.requests == []


def test_identical_prompts_in_flight_together_are_paid_once():
    """45 judgements of 30 distinct prompts, all in flight at once: 30 calls, not 45."""
    from harness.judge.client import JudgeClient
    from harness.judge.scoring import Judge, JudgeItem, load_rubric

    distinct = [JudgeItem(f"i{n}", f"Change {n}", f"answer {n}") for n in range(30)]
    copies = [JudgeItem(f"copy{n}", i.instruction, i.response) for n, i in enumerate(distinct[:15])]
    rubric = load_rubric(RUBRIC)
    one = dataclasses.replace(rubric, criteria=rubric.criteria[:1])
    with FakeJudge(json_judge, latency_s=0.3) as server:
        judge = Judge(one, JudgeClient(server.base_url, "fake", max_concurrency=64),
                      output="json", max_tokens=50)
        rows = judge.grade(distinct + copies)
    assert len(server.requests) == 30
    assert judge.client.ledger.calls == 30 and judge.client.ledger.cached_calls == 15
    by_id = {r["item_id"]: r for r in rows}
    assert all(by_id[f"copy{n}"]["raw"] == by_id[f"i{n}"]["raw"] and by_id[f"copy{n}"]["cached"]
               for n in range(15))


def test_the_budget_message_counts_what_the_calls_in_flight_spent(tmp_path):
    """The budget runs out while calls are in flight: the message is written after they are
    paid for, so it names what was really spent."""
    with FakeJudge(json_judge, latency_s=0.3) as server:
        cfg = cfg_for(tmp_path, server.base_url, "judge.max_concurrency=4", "judge.budget_usd=2.5")
        with pytest.raises(HarnessError) as stopped:
            run_judge(cfg.judge, cfg.model, cfg.cache_dir, tmp_path / "out", "unused", ITEMS,
                      ANSWERS)
    paid = len(server.requests)
    assert paid > 0
    assert f"${PER_CALL * paid:.6f} spent on {paid} new calls" in str(stopped.value)


def test_a_budget_stop_reaches_the_requests_waiting_on_a_shared_call():
    """Copies of a prompt wait on its one call; when the budget stops the run, a copy whose
    call never started stops too, and one whose call was answered gets that answer."""
    from harness.judge.client import JudgeClient, Ledger
    from harness.judge.scoring import Judge, JudgeItem, load_rubric

    items = [JudgeItem(f"{copy}{n}", f"Change {n}", f"answer {n}") for copy in "ab" for n in range(4)]
    rubric = load_rubric(RUBRIC)
    one = dataclasses.replace(rubric, criteria=rubric.criteria[:1])
    with FakeJudge(json_judge, latency_s=0.3) as server:
        judge = Judge(one, JudgeClient(server.base_url, "fake", max_concurrency=64,
                                       ledger=Ledger(1.0, 2.0, budget_usd=2.5)),
                      output="json", max_tokens=50)
        with pytest.raises(HarnessError, match="Stopped cleanly") as stopped:
            judge.grade(items)
    paid = len(server.requests)
    assert 0 < paid == judge.client.ledger.calls < 4  # the budget held a few calls' worst case
    assert judge.client.ledger.cached_calls == paid  # each paid call answered its copy too
    assert f"{2 * paid} of 8 judgements of this batch finished" in str(stopped.value)
