"""LLM-as-judge: grade responses against a YAML rubric through any OpenAI-compatible endpoint.

Absolute grading, one call per (item, criterion), the judge answering a single digit 1-5:
single-criterion prompts are the easiest for a judge to follow and the cheapest to cache.
When the endpoint returns logprobs, the probability-weighted score over the digit tokens is
kept as well; it is less noisy than the argmax digit. Replies are cached on disk by the hash of
everything that determines them (model, messages, parameters), so a rerun makes no calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json, stable_hash

log = logging.getLogger(__name__)

DIGITS = ["1", "2", "3", "4", "5"]
_SCORE = re.compile(r"(?<![0-9])[1-5](?![0-9])")  # "4", "Score: 4/5"; not the 1 of "10"
_MARKER = re.compile(r"<<<\s*/?\s*[A-Z][A-Z_]*\s*>>>")  # the rubric's delimiters, e.g. <<<TASK>>>
NO_REFERENCE = "(no reference change is available; judge from the task description alone)"


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    anchors: dict[int, str]


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    criteria: tuple[Criterion, ...]
    system: str
    template: str


@dataclass(frozen=True)
class JudgeItem:
    id: str
    instruction: str
    response: str
    reference: str | None = None


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric YAML (see judges/code_change.yaml for the format)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"judge rubric {path} not found. Fix: point the judge at a rubric YAML "
                           f"such as judges/code_change.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise HarnessError(f"judge rubric {path} is not valid YAML: {e}") from e
    data = data if isinstance(data, dict) else {}
    missing = [k for k in ("name", "version", "criteria", "system", "template") if not data.get(k)]
    if missing:
        raise HarnessError(f"judge rubric {path} lacks {missing}")
    criteria = []
    for i, c in enumerate(data["criteria"]):
        lacking = [k for k in ("name", "description", "anchors")
                   if not (isinstance(c, dict) and c.get(k))]
        if lacking:
            raise HarnessError(f"judge rubric {path}: criterion #{i + 1} lacks {lacking}")
        anchors = {int(k): str(v).strip() for k, v in c["anchors"].items()}
        if sorted(anchors) != [1, 2, 3, 4, 5]:
            raise HarnessError(f"judge rubric {path}: criterion {c['name']!r} needs anchors 1..5")
        criteria.append(Criterion(str(c["name"]), str(c["description"]).strip(), anchors))
    rubric = Rubric(str(data["name"]), str(data["version"]), tuple(criteria),
                    str(data["system"]), str(data["template"]))
    try:  # fail on load, not after the first hundred calls
        _user_prompt(rubric, criteria[0], JudgeItem("check", "", ""), 1)
    except (KeyError, IndexError, ValueError) as e:
        raise HarnessError(f"judge rubric {path}: bad template placeholder {e}; allowed: "
                           f"criterion, description, anchors, instruction, reference, "
                           f"response") from e
    return rubric


def _untrusted(text: str, limit: int) -> str:
    """Strip delimiter look-alikes (so the text cannot close its block) and cap its length."""
    text = _MARKER.sub("[marker removed]", text)
    if len(text) > limit:
        text = text[:limit] + f"\n[... {len(text) - limit} more characters truncated]"
    return text


def _user_prompt(rubric: Rubric, criterion: Criterion, item: JudgeItem, limit: int) -> str:
    anchors = "\n".join(f"{k} = {v}" for k, v in sorted(criterion.anchors.items()))
    reference = _untrusted(item.reference, limit) if item.reference else NO_REFERENCE
    return rubric.template.format(
        criterion=criterion.name, description=criterion.description, anchors=anchors,
        instruction=_untrusted(item.instruction, limit), reference=reference,
        response=_untrusted(item.response, limit))


def _weighted(top: list[list[Any]] | None) -> float | None:
    """Probability-weighted mean over the digit tokens among the first position's top logprobs."""
    digits = [(int(t.strip()), math.exp(lp)) for t, lp in top or [] if t.strip() in DIGITS]
    mass = sum(p for _, p in digits)
    return sum(d * p for d, p in digits) / mass if mass > 0 else None


def _parse(reply: dict) -> dict:
    raw = reply.get("content") or ""
    match = _SCORE.search(raw)
    return {"score": float(match.group()) if match else None,
            "weighted_score": _weighted(reply.get("top_logprobs")), "raw": raw,
            "parse_ok": match is not None, "usage": reply.get("usage") or {}}


class Judge:
    """Scores JudgeItems on every criterion of a rubric with one judge model.

    `guided_choice=True` sends vLLM's `guided_choice` so a compatible server can only answer a
    digit; other endpoints ignore or reject it. The API key is read from the environment
    variable named `api_key_env` ("EMPTY" when unset, which local servers accept).
    """

    def __init__(self, rubric: Rubric, base_url: str, model: str,
                 api_key_env: str = "OPENAI_API_KEY", guided_choice: bool = False,
                 max_concurrency: int = 4, timeout_s: float = 60, max_retries: int = 3,
                 max_response_chars: int = 4000, cache_dir: str | Path | None = None,
                 max_tokens: int = 8):
        self.rubric, self.base_url, self.model = rubric, base_url, model
        self.api_key_env, self.guided_choice = api_key_env, guided_choice
        self.max_concurrency, self.timeout_s, self.max_retries = max_concurrency, timeout_s, max_retries
        self.max_response_chars, self.max_tokens = max_response_chars, max_tokens
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._logprobs = True  # turned off once the endpoint rejects logprobs

    def messages(self, item: JudgeItem, criterion: Criterion) -> list[dict]:
        user = _user_prompt(self.rubric, criterion, item, self.max_response_chars)
        return [{"role": "system", "content": self.rubric.system},
                {"role": "user", "content": user}]

    def params(self) -> dict:
        params: dict[str, Any] = {"temperature": 0, "max_tokens": self.max_tokens,
                                  "logprobs": True, "top_logprobs": 5}
        if self.guided_choice:
            params["extra_body"] = {"guided_choice": DIGITS}
        return params

    def score(self, items: list[JudgeItem], label: str = "") -> list[dict]:
        """One row per (item, criterion), in item order; see `summarize` for the aggregate."""
        jobs = [(item, c) for item in items for c in self.rubric.criteria]
        rows = asyncio.run(self._score_all(jobs))
        log.info("judge %s%s: %d judgements (%d cached, %d unparsed)", self.model,
                 f" [{label}]" if label else "", len(rows), sum(r["cached"] for r in rows),
                 sum(not r["parse_ok"] for r in rows))
        return rows

    async def _score_all(self, jobs: list[tuple[JudgeItem, Criterion]]) -> list[dict]:
        from openai import AsyncOpenAI

        semaphore = asyncio.Semaphore(self.max_concurrency)
        api_key = os.environ.get(self.api_key_env) or "EMPTY"
        async with AsyncOpenAI(base_url=self.base_url, api_key=api_key, timeout=self.timeout_s,
                               max_retries=self.max_retries) as client:
            return await asyncio.gather(*(self._score_one(client, semaphore, item, criterion)
                                          for item, criterion in jobs))

    async def _score_one(self, client: Any, semaphore: asyncio.Semaphore, item: JudgeItem,
                         criterion: Criterion) -> dict:
        messages, params = self.messages(item, criterion), self.params()
        key = stable_hash({"model": self.model, "messages": messages, "params": params})
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        cached = path is not None and path.is_file()
        if cached:
            reply = read_json(path)
        else:
            async with semaphore:
                reply = await self._call(client, messages, params)
            if path is not None and "error" not in reply:
                atomic_write_json(path, reply)
        row = {"item_id": item.id, "criterion": criterion.name, **_parse(reply), "cached": cached}
        if "error" in reply:
            row["error"] = reply["error"]
        return row

    async def _call(self, client: Any, messages: list[dict], params: dict) -> dict:
        """One chat completion -> {content, top_logprobs of the first position, usage}.

        A 400/422 while asking for logprobs is retried once without them (many hosted judges
        reject logprobs); a request the endpoint still rejects becomes an unparsed row with an
        `error`, while an unreachable or failing endpoint aborts the run.
        """
        import openai

        rejected = (openai.BadRequestError, openai.UnprocessableEntityError)
        plain = {k: v for k, v in params.items() if k not in ("logprobs", "top_logprobs")}
        try:
            try:
                response = await client.chat.completions.create(
                    model=self.model, messages=messages, **(params if self._logprobs else plain))
            except rejected as e:
                if not self._logprobs:
                    raise
                log.warning("judge endpoint rejected the request with logprobs (%s); retrying "
                            "without them", e.status_code)
                response = await client.chat.completions.create(
                    model=self.model, messages=messages, **plain)
                self._logprobs = False  # only now is it clear that logprobs were the problem
        except rejected as e:
            return {"content": "", "top_logprobs": None, "usage": {}, "error": str(e)}
        except openai.OpenAIError as e:
            raise HarnessError(f"judge endpoint {self.base_url} (model {self.model!r}) failed: "
                               f"{e}. Fix: check that the server is up and the model name and "
                               f"${self.api_key_env} are right.") from e
        choice = response.choices[0]
        content = getattr(choice.logprobs, "content", None) or []
        top = [[t.token, t.logprob] for t in content[0].top_logprobs] if content else None
        usage = response.usage.model_dump(include={"prompt_tokens", "completion_tokens",
                                                   "total_tokens"}) if response.usage else {}
        return {"content": choice.message.content or "", "top_logprobs": top, "usage": usage}


def summarize(scores: list[dict]) -> dict:
    """Per criterion: n, mean score (parsed rows), mean weighted score, parse failure rate;
    plus the tokens of all judgements and of those actually requested in this run."""
    by_criterion: dict[str, list[dict]] = {}
    for row in scores:
        by_criterion.setdefault(row["criterion"], []).append(row)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    criteria = {
        name: {"n": len(rows),
               "mean": mean([r["score"] for r in rows if r["parse_ok"]]),
               "weighted_mean": mean([r["weighted_score"] for r in rows
                                      if r["weighted_score"] is not None]),
               "parse_failure_rate": sum(not r["parse_ok"] for r in rows) / len(rows)}
        for name, rows in by_criterion.items()}

    def tokens(rows: list[dict]) -> int:
        return sum(r["usage"].get("total_tokens", 0) for r in rows)

    return {"criteria": criteria, "total_tokens": tokens(scores),
            "uncached_tokens": tokens([r for r in scores if not r["cached"]]),
            "n_cached": sum(r["cached"] for r in scores)}
