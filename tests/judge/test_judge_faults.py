"""The judge against an endpoint that misbehaves the way real ones do (judge_fake_server)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from judge_fake_server import FakeJudge, fenced, json_judge

from harness.errors import HarnessError
from harness.eval.judging import summarize
from harness.judge.client import JudgeClient
from harness.judge.scoring import Judge, JudgeItem, load_rubric

RUBRIC = load_rubric(Path(__file__).resolve().parents[2] / "judges" / "code_change.yaml")
ONE = dataclasses.replace(RUBRIC, criteria=RUBRIC.criteria[:1])  # one call per item
ITEMS = [JudgeItem(f"i{n}", f"Change number {n}", f"answer {n} GOOD" if n % 2 else f"answer {n}",
                   f"+reference {n}") for n in range(3)]


def judge(url: str, rubric=ONE, cache_dir=None, timeout_s: float = 10, max_retries: int = 3,
          max_concurrency: int = 4, **options) -> Judge:
    client = JudgeClient(url, "fake", timeout_s=timeout_s, max_retries=max_retries,
                         max_concurrency=max_concurrency, cache_dir=cache_dir)
    return Judge(rubric, client, **{"output": "json", "max_tokens": 50, **options})


def test_a_429_is_retried_after_the_retry_after_delay():
    with FakeJudge(json_judge, faults=["429"]) as server:
        rows = judge(server.base_url, max_concurrency=1).grade(ITEMS[:1])
    limited, retried = server.requests
    assert limited["fault"] == "429" and retried["body"] == limited["body"]
    assert retried["t"] - limited["t"] >= 1.0  # the server said Retry-After: 1
    assert rows[0]["parse_ok"] and rows[0]["score"] == 2.0


def test_5xx_timeouts_and_malformed_replies_are_retried_with_backoff():
    faults = ["500", "slow", "malformed", "no_choices"]
    with FakeJudge(json_judge, faults=faults) as server:
        rows = judge(server.base_url, timeout_s=1, max_retries=4).grade(ITEMS[1:2])
    assert [r["fault"] for r in server.requests] == [*faults, "ok"]
    assert rows[0]["parse_ok"] and rows[0]["score"] == 5.0 and rows[0]["attempts"] == 1


def test_a_failing_endpoint_stops_cleanly_and_a_rerun_pays_only_for_the_rest(tmp_path):
    failing = itertools.chain(["ok", "ok"], itertools.repeat("500"))
    with FakeJudge(json_judge, faults=failing) as server:
        flaky = judge(server.base_url, RUBRIC, tmp_path, max_retries=1, max_concurrency=1)
        with pytest.raises(HarnessError, match=r"failed: .*500.*2 of 6 judgements"):
            flaky.grade(ITEMS[:2])
    with FakeJudge(json_judge) as healthy:
        rows = judge(healthy.base_url, RUBRIC, tmp_path).grade(ITEMS[:2])
    assert len(healthy.requests) == 4  # the two paid judgements came from the cache
    assert [r["cached"] for r in rows] == [True, True, False, False, False, False]
    assert all(r["parse_ok"] for r in rows)


def test_unreadable_replies_are_reasked_and_counted():
    def fixes_itself(body: dict) -> str:  # prose first; JSON once re-asked
        return "Looks fine to me, 4 stars." if len(body["messages"]) == 2 else json_judge(body)

    with FakeJudge(fixes_itself) as server:
        rows = judge(server.base_url, max_reasks=2).grade(ITEMS[:1])
    reask = server.requests[1]["body"]["messages"]
    assert reask[2] == {"role": "assistant", "content": "Looks fine to me, 4 stars."}
    assert "could not be read" in reask[3]["content"] and '"score"' in reask[3]["content"]
    assert rows[0]["parse_ok"] and not rows[0]["first_try_ok"] and rows[0]["attempts"] == 2

    with FakeJudge(lambda body: "no idea") as server:
        rows = judge(server.base_url, max_reasks=2).grade(ITEMS)
    assert len(server.requests) == 3 * len(ITEMS)
    assert all(not r["parse_ok"] and r["score"] is None and r["raw"] == "no idea" for r in rows)
    assert summarize(rows)["parse_failure_rate"] == 1.0


def test_structured_output_is_requested_and_dropped_where_the_endpoint_rejects_it():
    with FakeJudge(json_judge) as server:
        judge(server.base_url).grade(ITEMS[:1])
    fmt = server.requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == ONE.absolute.schema

    def fenced_json(body: dict) -> str:  # what a judge without structured output tends to send
        return f"Here is my grade:\n```json\n{json_judge(body)[:-1]},}}\n```"

    def no_structured_output(body: dict) -> str | None:
        return "response_format json_schema is not supported" if "response_format" in body else None

    with FakeJudge(fenced_json, reject=no_structured_output) as server:
        j = judge(server.base_url, max_concurrency=1)
        rows = j.grade(ITEMS)
    assert j.client.dropped == {"response_format"}
    assert len(server.requests) == len(ITEMS) + 1  # one probe, then never again
    assert [r["score"] for r in rows] == [2.0, 5.0, 2.0] and all(r["parse_ok"] for r in rows)


def test_a_request_rejected_for_another_reason_is_an_error_row_and_keeps_the_features():
    def too_long(body: dict) -> str | None:
        return "context length exceeded" if "1" in fenced(body, "TASK") else None

    with FakeJudge(json_judge, reject=too_long) as server:
        j = judge(server.base_url)
        rows = j.grade(ITEMS)
    assert j.client.dropped == set()
    assert "context length exceeded" in rows[1]["error"] and not rows[1]["parse_ok"]
    assert rows[0]["parse_ok"] and rows[2]["parse_ok"]
    assert all(r["body"].get("logprobs") for r in server.requests if "1" not in fenced(r["body"], "TASK"))


def test_logprobs_weight_the_score_at_the_score_token():
    def top(body: dict, token: str) -> dict[str, float] | None:
        return {"5": 0.6, "4": 0.3, "3": 0.1} if token == "5" else None

    with FakeJudge(json_judge, top=top) as server:
        rows = judge(server.base_url).grade(ITEMS[:2])
    assert json.loads(rows[1]["raw"])["score"] == 5
    assert rows[1]["score"] == 5.0 and rows[1]["weighted_score"] == pytest.approx(4.5)
    # the fake gives the "2" token a certain 2 (no alternatives): the weight agrees with the digit
    assert rows[0]["score"] == 2.0 and rows[0]["weighted_score"] == pytest.approx(2.0)
