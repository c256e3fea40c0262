"""A scriptable OpenAI-compatible chat endpoint on loopback, for testing the judge against what
real endpoints do: 429s with Retry-After, 500s, replies slower than the client's timeout,
malformed bodies, and 400s for request options they do not support.

The replies are written by a function of the request, so a test decides what the "judge"
thinks (for example: prefer whichever response contains GOOD) by reading the real prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from harness.serve.app import ServerThread

SLOW_S = 3.0  # a "slow" fault answers after this long: longer than the tests' client timeouts


def fenced(body: dict, name: str) -> str:
    """The untrusted text the judge's first prompt fences as <<<name>>> ... <<<END_name>>>."""
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return prompt.split(f"<<<{name}>>>")[1].split(f"<<<END_{name}>>>")[0]


class FakeJudge:
    """`answer(body) -> content`; `faults` is consumed one per request: "ok", "429" (with
    Retry-After: 1), "500", "slow", "malformed" (cut-off JSON), "no_choices"; `reject(body)`
    returns a message to answer 400 with, or None; `top(body, token)` gives the top-logprob
    probabilities at a token. `requests` records each request's arrival, body and fault."""

    def __init__(self, answer: Callable[[dict], str], faults: Iterable[str] = (),
                 reject: Callable[[dict], str | None] | None = None,
                 top: Callable[[dict, str], dict[str, float] | None] | None = None,
                 usage: tuple[int, int] | None = (100, 10), latency_s: float = 0.0):
        self.answer, self.faults, self.reject, self.top = answer, iter(faults), reject, top
        self.usage, self.latency_s = usage, latency_s
        self.requests: list[dict] = []
        self._server = ServerThread(self._app())

    def __enter__(self) -> FakeJudge:
        self._server.__enter__()
        self.base_url = self._server.base_url
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.__exit__(*exc_info)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            fault = next(self.faults, "ok")
            self.requests.append({"t": time.monotonic(), "body": body, "fault": fault})
            if fault == "429":
                return JSONResponse({"error": {"message": "rate limited"}}, 429,
                                    headers={"retry-after": "1"})
            if fault == "500":
                return JSONResponse({"error": {"message": "boom"}}, 500)
            if fault == "malformed":
                return Response('{"id": "x", "choices": [', media_type="application/json")
            if fault == "no_choices":
                return JSONResponse({"id": "x", "object": "chat.completion"})
            message = self.reject(body) if self.reject else None
            if message:
                return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, 400)
            await asyncio.sleep(SLOW_S if fault == "slow" else self.latency_s)
            return JSONResponse(self._reply(body))

        return app

    def _reply(self, body: dict) -> dict:
        content = self.answer(body)
        logprobs = None
        if body.get("logprobs"):
            entries = []
            for token in re.findall(r"[A-Za-z]+|\d|\s+|.", content, re.S):
                probs = (self.top(body, token) if self.top else None) or {token: 0.9}
                entries.append({"token": token, "logprob": math.log(probs.get(token, 0.9)),
                                "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                                 for t, p in probs.items()]})
            logprobs = {"content": entries}
        reply = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                 "created": int(time.time()), "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                              "message": {"role": "assistant", "content": content}}]}
        if self.usage:
            reply["usage"] = {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1],
                              "total_tokens": sum(self.usage)}
        return reply


def json_judge(body: dict) -> str:
    """Absolute (score 5 for a response containing GOOD, else 2) or pairwise (the response
    containing GOOD wins, tie otherwise), as JSON with a rationale."""
    prompt = body["messages"][1]["content"]
    if "<<<RESPONSE_A>>>" in prompt:
        good = [label for label in "AB" if "GOOD" in fenced(body, f"RESPONSE_{label}")]
        return json.dumps({"rationale": "compared", "winner": good[0] if len(good) == 1 else "tie"})
    return json.dumps({"rationale": "graded",
                       "score": 5 if "GOOD" in fenced(body, "CANDIDATE_RESPONSE") else 2})


# Scripted judges of known character, for measuring the judge's reliability (json mode). Each
# reads the real prompt: the reference block, the fenced responses.
def _merit(body: dict, response: str) -> int:
    """What a careful judge would give: the reference itself 5, an answer marked GOOD 4, else 2."""
    prompt = body["messages"][1]["content"]
    reference = fenced(body, "REFERENCE") if "<<<REFERENCE>>>" in prompt else None
    return 5 if reference is not None and response.strip() == reference.strip() else (
        4 if "GOOD" in response else 2)


def _pairwise(body: dict) -> tuple[str, str] | None:
    prompt = body["messages"][1]["content"]
    if "<<<RESPONSE_A>>>" not in prompt:
        return None
    return fenced(body, "RESPONSE_A"), fenced(body, "RESPONSE_B")


def _reply(key: str, value: object) -> str:
    return json.dumps({"rationale": "scripted", key: value})


def reliable_judge(body: dict) -> str:
    """Grades by merit; prefers the better answer whichever side it is on; ties equal answers."""
    pair = _pairwise(body)
    if pair is None:
        return _reply("score", _merit(body, fenced(body, "CANDIDATE_RESPONSE")))
    a, b = (_merit(body, r) for r in pair)
    return _reply("winner", "A" if a > b else "B" if b > a else "tie")


def position_biased_judge(body: dict) -> str:
    """Grades by merit, but in a comparison always prefers whatever is shown first."""
    return reliable_judge(body) if _pairwise(body) is None else _reply("winner", "A")


def random_judge(body: dict) -> str:
    """Any allowed value, drawn from a generator seeded by the prompt (so a repeat agrees)."""
    rng = random.Random(hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest())
    if _pairwise(body) is None:
        return _reply("score", rng.randint(1, 5))
    return _reply("winner", rng.choice(["A", "B", "tie"]))
