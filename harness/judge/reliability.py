"""How far the judge can be trusted, measured on the run's own held-out data before its scores
count (the gate reads these figures; conf/gate's `judge_reliability` says what is enough).

Known answers: for each held-out change request, the change the team really made is judged
against a spoiled copy of it (judge_rubric.CORRUPTIONS: its lines shuffled, another request's
change, the first half of it, a reply that ignores the request). Each criterion of the rubric
lists the spoilings it must rank lower (`known_worse`). Per criterion:

- accuracy: the real change graded above the spoiled copy (absolute grading, as the gate's
  judge checks use it; the logprob-weighted score where there is one);
- pairwise accuracy: the real change preferred in both orders;
- position consistency: the same verdict in both orders (unreadable replies left out);
- first-position rate: the share of A among A/B verdicts; every pair is shown both ways, so a
  judge without position bias picks A half the time;
- self-tie rate: the candidate's answer against itself, which only "tie" judges right.

The known answers are judged exactly as the run's answers are (same rubric, same reference
shown), so the figures describe the judge as the gate uses it. The real change is the reference
itself, so a judge can pass by matching text: high accuracy is necessary, not sufficient; low
accuracy proves the scores mean little. Every call goes through the judge's client, so it is
cached and coalesced like any other and counts against the budget.
"""

from __future__ import annotations

import random

from harness.judge.rubric import CORRUPTIONS
from harness.judge.scoring import Judge, JudgeItem


def corruptions(records: list[dict], seed: int) -> dict[str, dict[str, str]]:
    """Item id -> {spoiling: spoiled text}, for records with `id`, `instruction` and `response`.

    A spoiling that would leave the change as it was (one line cannot be shuffled; every other
    record has the same change) is left out rather than counted as a known answer.
    """
    rng = random.Random(seed)
    out: dict[str, dict[str, str]] = {}
    for i, r in enumerate(records):
        real = r["response"]
        lines = real.splitlines()
        shuffled = lines[:]
        rng.shuffle(shuffled)
        if shuffled == lines:
            shuffled = lines[1:] + lines[:1]
        others = [o["response"] for o in records[i + 1:] + records[:i]
                  if o["response"].strip() != real.strip()]
        request = (r["instruction"].strip().splitlines() or [""])[0]
        spoiled = {
            "shuffled": "\n".join(shuffled),
            "other_change": others[0] if others else "",
            "truncated": ("\n".join(lines[: len(lines) // 2]) if len(lines) > 1
                          else real[: len(real) // 2]),
            "ignored": f"Understood: {request}\nThis needs no change, so I changed nothing.",
        }
        out[r["id"]] = {k: v for k, v in spoiled.items()
                        if v.strip() and v.strip() != real.strip()}
    return out


def _mean(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _value(row: dict) -> float | None:
    return row["weighted_score"] if row.get("weighted_score") is not None else row.get("score")


def measure(judge: Judge, records: list[dict], candidate: list[JudgeItem], seed: int = 0,
            pairwise: bool = True) -> tuple[dict, list[dict]]:
    """The judge's reliability per criterion (see the module docstring), and one row per
    judgement behind it (for samples/judge_reliability.jsonl)."""
    spoiled = corruptions(records, seed)
    real = {r["id"]: JudgeItem(r["id"], r["instruction"], r["response"], r["response"])
            for r in records}
    known = [(item_id, kind, crit) for item_id, kinds in spoiled.items()
             for crit in judge.rubric.criteria for kind in crit.known_worse if kind in kinds]
    fake = {(i, k): JudgeItem(f"{i}~{k}", real[i].instruction, text, real[i].reference)
            for i, kinds in spoiled.items() for k, text in kinds.items()}
    graded = list({(i, None, c.name): (real[i], c) for i, _, c in known}.values()) + \
        [(fake[i, k], c) for i, k, c in known]
    absolute = judge.grade_jobs(graded, "reliability")
    value = {(r["item_id"], r["criterion"]): _value(r) for r in absolute}
    pairs = (judge.compare_jobs([(fake[i, k], real[i], c) for i, k, c in known], "reliability")
             if pairwise else [])
    selves = (judge.compare_jobs([(a, a, c) for a in candidate for c in judge.rubric.criteria],
                                 "reliability: candidate vs itself") if pairwise else [])

    def right(i: str, k: str, c: str) -> bool:  # the real change graded above the spoiled one
        r, s = value[i, c], value[f"{i}~{k}", c]
        return r is not None and s is not None and r > s

    criteria = {}
    for crit in judge.rubric.criteria:
        mine = [(n, (i, k)) for n, (i, k, c) in enumerate(known) if c is crit]
        rows = [pairs[n] for n, _ in mine] if pairwise else []
        read = [r for r in rows if r["outcome"] is not None]
        picks = [v for r in read for v in r["verdicts"].values() if v in ("A", "B")]
        own = [r for r in selves if r["criterion"] == crit.name and r["outcome"] is not None]
        by_kind = {kind: [(n, i) for n, (i, k) in mine if k == kind] for kind in crit.known_worse}
        criteria[crit.name] = {
            "pairs": len(mine),
            "accuracy": _mean([right(i, k, crit.name) for _, (i, k) in mine]),
            "pairwise_accuracy": _mean([r["outcome"] == "win" for r in rows]) if pairwise else None,
            "position_consistency": _mean([not r["inconsistent"] for r in read]) if pairwise else None,
            "first_position_rate": _mean([v == "A" for v in picks]) if picks else None,
            "self_pairs": len(own),
            # both orders of a self pair are one prompt, asked once: its verdict must be tie
            "self_tie_rate": _mean([r["verdicts"]["base_first"] == "tie" for r in own])
            if pairwise else None,
            "by_spoiling": {kind: {
                "pairs": len(ns),
                "accuracy": _mean([right(i, kind, crit.name) for _, i in ns]),
                "pairwise_accuracy": _mean([pairs[n]["outcome"] == "win" for n, _ in ns])
                if pairwise else None} for kind, ns in by_kind.items()}}
    every = absolute + pairs + selves
    summary = {"criteria": criteria, "spoilings": list(CORRUPTIONS),
               "judgements": len(every), "cached": sum(r["cached"] for r in every),
               "parse_failure_rate": _mean([not r["parse_ok"] for r in every]),
               "cost_usd": sum(r["cost_usd"] for r in every), "pairwise": pairwise}
    out = [{"task": "judge_reliability", "kind": kind, **r}
           for kind, part in (("known_answer", absolute), ("known_pair", pairs),
                              ("self_pair", selves)) for r in part]
    return summary, out
