"""The judge's side of the wire: one OpenAI-compatible endpoint, called concurrently, robustly
and within a budget.

- Concurrency: at most `max_concurrency` requests in flight (an asyncio semaphore).
- Retries: the openai client retries 408/409/429/5xx, timeouts and connection errors with
  exponential backoff and waits as long as a Retry-After header says (up to two minutes); a
  reply that is not valid JSON or has no choices is retried here as often.
- Optional request features (logprobs, response_format, guided_choice) are dropped for the
  rest of the run once a request without them succeeds where the request with them got a
  400/422, so one judge config works against OpenAI, vLLM and servers that support neither.
- Content-addressed cache: every reply is stored under the hash of everything that determines
  it (model, messages, parameters), so a rerun or a resumed run pays for nothing twice.
- Coalescing: identical requests in flight at the same time share one call (the others wait for
  its reply), and a reply already received in this run is reused even without a disk cache.
- Budget: tokens and cost are counted per call, and a call starts only if its worst-case cost
  fits in what is left; calls already in flight finish (and are cached) before the run stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json, stable_hash

log = logging.getLogger(__name__)

# Words by which an endpoint's 400 message names an optional feature it does not support.
FEATURE_HINTS = {"logprobs": ("logprob",), "response_format": ("response_format", "json_schema"),
                 "guided_choice": ("guided",)}
CHARS_PER_TOKEN = 3  # conservative for code, used only to estimate a call's cost in advance


class Stopped(Exception):
    """No further calls in this run; the client's `stop_reason` says why."""


class Ledger:
    """Token and cost accounting for the calls made in one run, and the budget they must fit."""

    def __init__(self, price_prompt_1k: float = 0.0, price_completion_1k: float = 0.0,
                 budget_usd: float | None = None):
        if budget_usd is not None and not budget_usd > 0:  # 0 or less would refuse every call
            raise HarnessError(f"judge.budget_usd={budget_usd!r}: expected a positive amount, or "
                               "null for no budget.")
        self.prices = (price_prompt_1k, price_completion_1k)
        self.budget_usd = budget_usd
        self.spent_usd = self.reserved_usd = 0.0
        self.calls = self.cached_calls = self.prompt_tokens = self.completion_tokens = 0

    def cost(self, usage: dict) -> float:
        return (usage.get("prompt_tokens", 0) * self.prices[0]
                + usage.get("completion_tokens", 0) * self.prices[1]) / 1000

    def worst_case(self, messages: list[dict], max_tokens: int) -> float:
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        return self.cost({"prompt_tokens": chars // CHARS_PER_TOKEN + 1,
                          "completion_tokens": max_tokens})

    def reserve(self, amount: float) -> bool:
        """Hold `amount` for a call about to start; False when it might not fit the budget."""
        if self.budget_usd is not None and self.spent_usd + self.reserved_usd + amount > self.budget_usd:
            return False
        self.reserved_usd += amount
        return True

    def settle(self, reserved: float, usage: dict | None) -> None:
        self.reserved_usd -= reserved
        if usage is not None:
            self.calls += 1
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)
            self.spent_usd += self.cost(usage)

    def spent(self) -> str:
        """What this run has paid so far, in words, for messages written after the fact."""
        return (f"${self.spent_usd:.6f} spent on {self.calls} new calls "
                f"({self.cached_calls} more answered without a call)")

    def summary(self) -> dict:
        return {"calls": self.calls, "cached_calls": self.cached_calls,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "spent_usd": round(self.spent_usd, 6), "budget_usd": self.budget_usd,
                "price_per_1k_prompt_tokens": self.prices[0],
                "price_per_1k_completion_tokens": self.prices[1]}


class JudgeClient:
    """Chat completions against one endpoint; use `complete` inside `async with client.session()`.

    The API key is read from the environment variable named `api_key_env` ("EMPTY" when
    unset, which local servers accept).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 4, timeout_s: float = 60, max_retries: int = 3,
                 cache_dir: str | Path | None = None, ledger: Ledger | None = None):
        # the constructor's own contract (config_check refuses these at start too): no slot
        # for a request would wait forever, a negative retry count or timeout means nothing
        for key, value, low in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0)):
            if not isinstance(value, int) or value < low:
                raise HarnessError(f"judge.{key}={value!r}: expected a whole number >= {low}.")
        if not timeout_s > 0:
            raise HarnessError(f"judge.timeout_s={timeout_s!r}: expected a number > 0.")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.max_concurrency, self.timeout_s, self.max_retries = max_concurrency, timeout_s, max_retries
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.ledger = ledger or Ledger()
        self.dropped: set[str] = set()  # optional features this endpoint rejects
        self.stop_reason: str | None = None
        self._api: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Task] = {}  # request key -> the one call making it
        self._received: dict[str, dict] = {}  # request key -> reply, for this client's lifetime

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[JudgeClient]:
        from openai import AsyncOpenAI

        api_key = os.environ.get(self.api_key_env) or "EMPTY"
        async with AsyncOpenAI(base_url=self.base_url, api_key=api_key, timeout=self.timeout_s,
                               max_retries=self.max_retries) as api:
            self._api, self._semaphore = api, asyncio.Semaphore(self.max_concurrency)
            try:
                yield self
            finally:
                self._api = self._semaphore = None

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    async def complete(self, messages: list[dict], params: dict, optional: dict[str, dict],
                       keep: tuple[str, ...] = ()) -> dict:
        """One reply: {content, tokens, top, usage, cached[, error]}.

        `optional` maps a feature name (see FEATURE_HINTS) to its request parameters; `top`
        holds the top logprobs of the positions whose token is one of `keep`. A request the
        endpoint rejects even without optional features comes back with an `error` (and is not
        cached); raises Stopped when the budget is spent or the endpoint fails.
        """
        key = stable_hash({"model": self.model, "messages": messages, "params": params,
                           "optional": optional})
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if key in self._received:
            self.ledger.cached_calls += 1
            return {**self._received[key], "cached": True}
        if path is not None and path.is_file():
            self.ledger.cached_calls += 1
            return {**read_json(path), "cached": True}
        if key in self._inflight:  # the same request is on the wire: wait for its reply
            reply = await self._inflight[key]
            self.ledger.cached_calls += 1
            return {**reply, "cached": True}
        call = asyncio.ensure_future(self._call(messages, params, optional, keep, path))
        self._inflight[key] = call
        try:
            reply = await call
        finally:
            del self._inflight[key]
        if "error" not in reply:
            self._received[key] = reply
        return {**reply, "cached": False}

    async def _call(self, messages: list[dict], params: dict, optional: dict[str, dict],
                    keep: tuple[str, ...], path: Path | None) -> dict:
        """One paid request, within the concurrency limit and the budget; cached once received."""
        assert self._semaphore is not None, "use complete() inside `async with client.session()`"
        async with self._semaphore:
            if self.stop_reason:
                raise Stopped
            worst = self.ledger.worst_case(messages, params.get("max_tokens", 0))
            if not self.ledger.reserve(worst):
                # what was spent is added when the run stops (Judge._run): calls still in
                # flight now are paid for after this line runs
                self.stop(f"the judge budget of ${self.ledger.budget_usd} for this run would be "
                          f"exceeded: the next call could cost up to ${worst:.6f}. Fix: rerun "
                          f"to continue with a fresh budget for the remaining calls, or raise "
                          f"judge.budget_usd (null: no cap).")
                raise Stopped
            reply = None
            try:
                reply = await self._request(messages, params, optional, keep)
            finally:
                self.ledger.settle(worst, None if reply is None or "error" in reply else reply["usage"])
        if path is not None and "error" not in reply:
            atomic_write_json(path, reply)
        return reply

    async def _request(self, messages: list[dict], params: dict, optional: dict[str, dict],
                       keep: tuple[str, ...]) -> dict:
        import openai

        features = [f for f in optional if f not in self.dropped]
        while True:
            extra = {k: v for f in features for k, v in optional[f].items()}
            try:
                reply = await self._create(messages, {**params, **extra}, keep)
                break
            except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
                if not features:
                    return {"content": "", "tokens": [], "top": {}, "usage": {},
                            "error": f"{e.status_code}: {e.message}"}
                named = [f for f in features if any(w in str(e).lower() for w in FEATURE_HINTS[f])]
                features = [f for f in features if f not in (named or features)]
            except openai.OpenAIError as e:
                self.stop(f"judge endpoint {self.base_url} (model {self.model!r}) failed: {e}. "
                          f"Fix: check that the server is up, the model name is right and "
                          f"${self.api_key_env} holds a valid key.")
                raise Stopped from e
        newly = set(optional) - set(features) - self.dropped
        if newly:  # only now is it clear that these features were the problem
            log.warning("judge endpoint %s rejects %s; continuing without", self.base_url,
                        ", ".join(sorted(newly)))
            self.dropped |= newly
        return reply

    async def _create(self, messages: list[dict], params: dict, keep: tuple[str, ...]) -> dict:
        """One chat completion, retried when the reply is malformed (not JSON, no choices)."""
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._api.chat.completions.create(
                    model=self.model, messages=messages, **params)
                return _reply(response, messages, keep)
            except (ValueError, AttributeError, IndexError, TypeError) as e:
                if attempt == self.max_retries:
                    self.stop(f"judge endpoint {self.base_url} (model {self.model!r}) keeps "
                              f"sending malformed replies ({type(e).__name__}: {e}). Fix: check "
                              f"that base_url points at an OpenAI-compatible /v1 API.")
                    raise Stopped from e
                log.warning("malformed reply from the judge endpoint (%s); retrying", e)
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


def _reply(response: Any, messages: list[dict], keep: tuple[str, ...]) -> dict:
    """The parts of a chat completion the judge uses, in a compact JSON-able form."""
    choice = response.choices[0]
    content = choice.message.content or ""
    entries = getattr(choice.logprobs, "content", None) or []
    top = {str(i): [[t.token, t.logprob] for t in e.top_logprobs or []]
           for i, e in enumerate(entries) if e.token.strip().lower() in keep}
    if response.usage is not None:
        usage = {"prompt_tokens": response.usage.prompt_tokens or 0,
                 "completion_tokens": response.usage.completion_tokens or 0}
    else:  # some servers omit usage: estimate it, so cost accounting never reads zero
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = {"prompt_tokens": chars // CHARS_PER_TOKEN + 1,
                 "completion_tokens": len(content) // CHARS_PER_TOKEN + 1, "estimated": True}
    return {"content": content, "tokens": [e.token for e in entries], "top": top, "usage": usage}
