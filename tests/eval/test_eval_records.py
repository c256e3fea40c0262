"""The per-sample schema and the metrics computed from it (unbiased pass@k over n samples)."""

from __future__ import annotations

import math

import pytest

from harness.eval.records import FIELDS, match_metrics, pass_metrics, row


def _rows(passes: dict[str, list[bool]]) -> list[dict]:
    return [row("humaneval", item, "base", "h", "out", sample=s, passed=p,
                status="passed" if p else "failed")
            for item, ps in passes.items() for s, p in enumerate(ps)]


def test_every_row_has_every_field_and_nothing_else():
    r = row("fim", "a.py@1:3", "candidate", "h", "x = 1\n", engine="hf", exact_match=1.0)
    assert list(r) == list(FIELDS)
    assert r["passed"] is None and r["exact_match"] == 1.0 and r["sample"] == 0
    with pytest.raises(ValueError, match="not in the sample schema"):
        row("fim", "a", "base", "h", "", verdict=True)


def test_pass_at_k_is_the_unbiased_estimate_averaged_over_problems():
    rows = _rows({"P/1": [True, False, False, False], "P/2": [True, True, False, False],
                  "P/3": [False] * 4})
    m = pass_metrics(rows, [1, 2, 10])
    assert m["n"] == 3 and m["samples"] == 12 and m["passed"] == 3
    assert m["pass@1"] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    p2 = [1 - math.comb(4 - c, 2) / math.comb(4, 2) for c in (1, 2, 0)]
    assert m["pass@2"] == pytest.approx(sum(p2) / 3)
    assert "pass@10" not in m  # more than the 4 samples per problem
    assert m["status"] == {"passed": 3, "failed": 9}


def test_greedy_pass_at_1_is_the_pass_rate():
    m = pass_metrics(_rows({"P/1": [True], "P/2": [False], "P/3": [True]}), [1])
    assert m["pass@1"] == pytest.approx(2 / 3) and m["n"] == m["samples"] == 3


def test_match_metrics_average_the_fim_scores():
    rows = [row("fim", str(i), "base", "h", "o", exact_match=e, first_line_exact_match=f,
                edit_similarity=s) for i, (e, f, s) in enumerate([(1.0, 1.0, 1.0), (0.0, 1.0, 0.5)])]
    assert match_metrics(rows) == {"exact_match": 0.5, "first_line_exact_match": 1.0,
                                   "edit_similarity": 0.75, "n": 2}
