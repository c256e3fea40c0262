"""Pairwise judging: blind A/B labels, both orders, inconsistent verdicts counted as ties."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from judge_fake_server import FakeJudge, json_judge

from harness.eval.judging import summarize_pairwise
from harness.judge.client import JudgeClient
from harness.judge.scoring import Judge, JudgeItem, load_rubric

RUBRIC = load_rubric(Path(__file__).resolve().parents[2] / "judges" / "code_change.yaml")
ONE = dataclasses.replace(RUBRIC, criteria=RUBRIC.criteria[1:2])  # convention_adherence
BASE = [JudgeItem("better", "Task 1", "plain"), JudgeItem("worse", "Task 2", "GOOD old"),
        JudgeItem("same", "Task 3", "plain")]
CANDIDATE = [JudgeItem("better", "Task 1", "GOOD new"), JudgeItem("worse", "Task 2", "plain"),
             JudgeItem("same", "Task 3", "plain too")]


def fenced_pair(prompt: str) -> tuple[str, str]:
    return tuple(re.search(rf"<<<RESPONSE_{x}>>>\n(.*?)\n<<<END_RESPONSE_{x}>>>", prompt, re.S)[1]
                 for x in "AB")


def skeleton(prompt: str) -> str:
    return re.sub(r"(<<<RESPONSE_([AB])>>>).*?(<<<END_RESPONSE_\2>>>)", r"\1\3", prompt, flags=re.S)


def compare(answer, **server_options) -> tuple[list[dict], FakeJudge]:
    with FakeJudge(answer, **server_options) as server:
        rows = Judge(ONE, JudgeClient(server.base_url, "fake"), output="json",
                     max_tokens=50).compare(BASE, CANDIDATE)
    return rows, server


def test_a_consistent_judge_gives_wins_losses_and_ties():
    rows, server = compare(json_judge)
    assert [r["outcome"] for r in rows] == ["win", "loss", "tie"]
    assert not any(r["inconsistent"] for r in rows)
    assert rows[0]["verdicts"] == {"base_first": "B", "candidate_first": "A"}
    assert rows[0]["rationales"] == {"base_first": "compared", "candidate_first": "compared"}
    assert len(server.requests) == 2 * len(BASE)
    # blind: the two orders' prompts differ only in which answer sits in which block
    first, second = (r["body"]["messages"][1]["content"] for r in server.requests
                     if "Task 1" in r["body"]["messages"][1]["content"])
    assert skeleton(first) == skeleton(second)
    assert {fenced_pair(first), fenced_pair(second)} == {("plain", "GOOD new"), ("GOOD new", "plain")}
    stats = summarize_pairwise(rows)["criteria"]["convention_adherence"]
    assert stats == {**stats, "n": 3, "compared": 3, "wins": 1, "ties": 1, "losses": 1,
                     "inconsistent": 0, "first_position_rate": 0.5}
    assert stats["win_rate"] == stats["loss_rate"] == pytest.approx(1 / 3)


def test_a_position_biased_judge_produces_only_ties():
    def always_a(body: dict) -> str:
        return json.dumps({"rationale": "the first one", "winner": "A"})

    def top(body: dict, token: str) -> dict[str, float] | None:
        return {"A": 0.8, "B": 0.2} if token == "A" else None

    rows, _ = compare(always_a, top=top)
    assert [r["outcome"] for r in rows] == ["tie", "tie", "tie"]
    assert all(r["inconsistent"] for r in rows)
    # P(candidate better) is 0.2 when it is B and 0.8 when it is A: no preference overall
    assert all(r["preference"] == pytest.approx(0.5) for r in rows)
    stats = summarize_pairwise(rows)["criteria"]["convention_adherence"]
    assert stats["ties"] == stats["inconsistent"] == 3 and stats["first_position_rate"] == 1.0


def test_an_unreadable_order_leaves_the_comparison_out():
    def unreadable_when_candidate_first(body: dict) -> str:
        prompt = body["messages"][1]["content"]
        return "hmm" if "<<<RESPONSE_A>>>\nGOOD new" in prompt else json_judge(body)

    rows, _ = compare(unreadable_when_candidate_first)
    assert rows[0]["outcome"] is None and not rows[0]["parse_ok"]
    assert rows[0]["verdicts"] == {"base_first": "B", "candidate_first": None}
    stats = summarize_pairwise(rows)
    assert stats["criteria"]["convention_adherence"]["compared"] == 2
    assert stats["parse_failure_rate"] == pytest.approx(1 / 3)
