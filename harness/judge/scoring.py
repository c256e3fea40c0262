"""LLM-as-judge: grade responses against a YAML rubric through any OpenAI-compatible endpoint.

Two protocols, one call per criterion (single-criterion prompts are the easiest for a judge to
follow and the cheapest to cache):
- absolute: a response is graded 1-5 against the anchors, with a rationale in json mode;
- pairwise: base and candidate answers are shown as A and B, in both orders; the candidate wins
  only if it wins in both, loses only if it loses in both, and anything else is a tie (position
  bias shows up as ties instead of as a preference).
An unreadable reply is re-asked at most `max_reasks` times; what is still unreadable counts as a
parse failure, and the rate is reported. Where the endpoint returns logprobs, the probability
of each value is kept: a weighted score for absolute grading, a soft preference for pairwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.judge.client import JudgeClient, Stopped
from harness.judge.parse import Parsed, expected_score, parse
from harness.judge.rubric import (
    KINDS,
    OUTPUT_MODES,
    Criterion,
    Rubric,
    load_rubric,
    render,
)

__all__ = ["Judge", "JudgeItem", "load_rubric"]
log = logging.getLogger(__name__)
ORDERS = ("base_first", "candidate_first")  # pairwise: which answer is shown as A
CANDIDATE_LABEL = {"base_first": "B", "candidate_first": "A"}


@dataclass(frozen=True)
class JudgeItem:
    id: str
    instruction: str
    response: str
    reference: str | None = None


class Judge:
    """Judges JudgeItems on every criterion of a rubric through a JudgeClient.

    `output="json"` asks for {rationale, score|winner} and sends the rubric's schema as
    `response_format` when `response_format` is set; `output="choice"` asks for the bare value
    and sends vLLM's `guided_choice` when `guided_choice` is set. Either request option is
    dropped automatically if the endpoint rejects it.
    """

    def __init__(self, rubric: Rubric, client: JudgeClient, output: str = "choice",
                 guided_choice: bool = False, response_format: bool = True,
                 logprobs: bool = True, top_logprobs: int = 5, max_tokens: int = 8,
                 max_reasks: int = 2, max_response_chars: int = 4000):
        if output not in OUTPUT_MODES:
            raise HarnessError(f"judge.output={output!r}: expected one of {OUTPUT_MODES}.")
        self.rubric, self.client, self.output = rubric, client, output
        self.guided_choice, self.response_format = guided_choice, response_format
        self.logprobs, self.top_logprobs = logprobs, top_logprobs
        self.max_tokens, self.max_reasks, self.max_response_chars = max_tokens, max_reasks, max_response_chars

    def messages(self, kind: str, criterion: Criterion, instruction: str, reference: str | None,
                 *responses: str) -> list[dict]:
        return render(self.rubric, kind, self.output, criterion, instruction, reference,
                      responses, self.max_response_chars)

    def grade(self, items: list[JudgeItem], label: str = "") -> list[dict]:
        """Absolute grading: one row per (item, criterion), in item order."""
        return self.grade_jobs([(item, c) for item in items for c in self.rubric.criteria], label)

    def grade_jobs(self, jobs: list[tuple[JudgeItem, Criterion]], label: str = "") -> list[dict]:
        """Absolute grading of chosen (item, criterion) pairs, one row each, in order."""
        results = self._run([self._ask("absolute", self.messages(
            "absolute", c, item.instruction, item.reference, item.response)) for item, c in jobs],
            f"judge{f' [{label}]' if label else ''}")
        rows = [{"item_id": item.id, "criterion": c.name, **_absolute(r)}
                for (item, c), r in zip(jobs, results, strict=True)]
        log.info("judge %s%s: %d judgements (%d cached, %d unparsed)", self.client.model,
                 f" [{label}]" if label else "", len(rows), sum(r["cached"] for r in rows),
                 sum(not r["parse_ok"] for r in rows))
        return rows

    def compare(self, base: list[JudgeItem], candidate: list[JudgeItem]) -> list[dict]:
        """Pairwise, blind and in both orders: one row per (item, criterion), the candidate's
        outcome win / tie / loss (None when a reply stayed unreadable)."""
        if [b.id for b in base] != [c.id for c in candidate]:
            raise HarnessError("pairwise judging needs the same items, in the same order, for "
                               "base and candidate.")
        return self.compare_jobs([(b, c, crit) for b, c in zip(base, candidate, strict=True)
                                  for crit in self.rubric.criteria])

    def compare_jobs(self, jobs: list[tuple[JudgeItem, JudgeItem, Criterion]],
                     label: str = "pairwise") -> list[dict]:
        """Chosen (base, candidate, criterion) comparisons, each in both orders; the task and
        reference shown are the base item's. One row per job, from the candidate's side."""
        asks = [(b, c, crit, order) for b, c, crit in jobs for order in ORDERS]
        results = self._run([self._ask("pairwise", self.messages(
            "pairwise", crit, b.instruction, b.reference,
            *((b.response, c.response) if order == "base_first" else (c.response, b.response))))
            for b, c, crit, order in asks], f"judge [{label}]")
        rows = [{"item_id": c.id, "criterion": crit.name,
                 **_pairwise(results[2 * i], results[2 * i + 1])}
                for i, (_, c, crit) in enumerate(jobs)]
        log.info("judge %s [%s]: %d comparisons (%d inconsistent across orders, %d unparsed)",
                 self.client.model, label, len(rows), sum(r["inconsistent"] for r in rows),
                 sum(r["outcome"] is None for r in rows))
        return rows

    def _run(self, coroutines: list[Awaitable[dict | None]], desc: str) -> list[dict]:
        async def gather() -> list[dict | None]:
            async with self.client.session():
                bar = tqdm(total=len(coroutines), desc=desc, unit="judgement", leave=False)

                async def tracked(coro: Awaitable[dict | None]) -> dict | None:
                    try:
                        return await coro
                    finally:
                        bar.update()

                try:
                    return await asyncio.gather(*(tracked(c) for c in coroutines))
                finally:
                    bar.close()

        results = asyncio.run(gather())
        if self.client.stop_reason:
            done = sum(r is not None for r in results)
            raise HarnessError(
                f"{self.client.stop_reason} Stopped cleanly: {self.client.ledger.spent()} in "
                f"this run; {done} of {len(results)} judgements of this batch finished and "
                f"every reply received is cached, so a rerun pays only for what is missing.")
        return results  # type: ignore[return-value]

    def _options(self, kind: str) -> tuple[dict, dict[str, dict]]:
        """Request parameters, and the optional ones the endpoint may turn out to reject."""
        values, schema = KINDS[kind][1], self.rubric.prompt(kind).schema
        optional: dict[str, dict] = {}
        if self.logprobs:
            optional["logprobs"] = {"logprobs": True, "top_logprobs": self.top_logprobs}
        if self.output == "json" and self.response_format:
            optional["response_format"] = {"response_format": {"type": "json_schema", "json_schema": {
                "name": f"{self.rubric.name}_{kind}", "schema": schema, "strict": True}}}
        if self.output == "choice" and self.guided_choice:
            optional["guided_choice"] = {"extra_body": {"guided_choice": list(values)}}
        return {"temperature": 0, "max_tokens": self.max_tokens}, optional

    async def _ask(self, kind: str, messages: list[dict]) -> dict | None:
        """One judgement: ask, re-ask while the reply is unreadable; None once stopped."""
        prompt, (params, optional) = self.rubric.prompt(kind), self._options(kind)
        keep = tuple(v.lower() for v in KINDS[kind][1])  # tokens whose top logprobs matter
        replies: list[dict] = []
        parsed = Parsed(None)
        try:
            while len(replies) <= self.max_reasks:
                reply = await self.client.complete(messages, params, optional, keep)
                replies.append(reply)
                parsed = parse(reply, kind, self.output, prompt.schema)
                if parsed.ok or "error" in reply:
                    break
                reask = self.rubric.reask.format(error=parsed.error, answer=prompt.answer[self.output])
                messages = [*messages, {"role": "assistant", "content": reply["content"]},
                            {"role": "user", "content": reask}]
        except Stopped:
            return None
        usage = {k: sum(r["usage"].get(k, 0) for r in replies)
                 for k in ("prompt_tokens", "completion_tokens")}
        row = {"value": parsed.value, "probs": parsed.probs, "rationale": parsed.rationale,
               "raw": replies[-1]["content"], "parse_ok": parsed.ok, "attempts": len(replies),
               "first_try_ok": parsed.ok and len(replies) == 1,
               "usage": usage, "cost_usd": self.client.ledger.cost(usage),
               "cached": all(r["cached"] for r in replies)}
        if "error" in replies[-1]:
            row["error"] = replies[-1]["error"]
        return row


def _absolute(r: dict) -> dict:
    rest = {k: v for k, v in r.items() if k not in ("value", "probs")}
    return {"score": float(r["value"]) if r["value"] else None,
            "weighted_score": expected_score(r["probs"]), **rest}


def _preference(probs: dict[str, float] | None, candidate_label: str) -> float | None:
    """P(candidate better) + P(tie) / 2 in one order."""
    if not probs:
        return None
    return probs.get(candidate_label, 0.0) + probs.get("tie", 0.0) / 2


def _pairwise(base_first: dict, candidate_first: dict) -> dict:
    """Combine the two orders into the candidate's outcome: a win or loss must hold in both."""
    pair = dict(zip(ORDERS, (base_first, candidate_first), strict=True))
    outcomes = [None if r["value"] is None else "tie" if r["value"] == "tie"
                else "win" if r["value"] == CANDIDATE_LABEL[o] else "loss" for o, r in pair.items()]
    prefs = [_preference(r["probs"], CANDIDATE_LABEL[o]) for o, r in pair.items()]
    unparsed = None in outcomes
    consistent = not unparsed and outcomes[0] == outcomes[1]
    errors = [r["error"] for r in pair.values() if "error" in r]
    return {"outcome": None if unparsed else outcomes[0] if consistent else "tie",
            "inconsistent": not unparsed and not consistent,
            "preference": None if None in prefs else sum(prefs) / 2,
            **{name: {o: r[field] for o, r in pair.items()} for name, field in (
                ("verdicts", "value"), ("rationales", "rationale"), ("raw", "raw"),
                ("attempts", "attempts"))},
            "parse_ok": not unparsed,
            "first_try_ok": all(r["first_try_ok"] for r in pair.values()),
            "usage": {k: sum(r["usage"][k] for r in pair.values()) for k in base_first["usage"]},
            "cost_usd": sum(r["cost_usd"] for r in pair.values()),
            "cached": all(r["cached"] for r in pair.values()),
            **({"error": errors[0]} if errors else {})}
