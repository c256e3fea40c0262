"""What the server refuses before a model sees a request: no key, too big a body, and what it
does with its own surprises; and where it refuses to listen."""

from __future__ import annotations

import json

import httpx
import openai
import psutil
import pytest

from harness.errors import HarnessError
from harness.serve.app import Limits, ServerThread, create_app
from harness.serve.guard import check_bind

KEY = "sk-test-3f9a"
LIMITS = Limits(max_body_bytes=200_000, max_prompt_tokens=64)
SMALL = {"model": "base", "prompt": "def f(x):\n", "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def guarded(tiny_model):
    app = create_app(tiny_model, limits=LIMITS, api_key=KEY)

    @app.get("/v1/boom")
    def boom() -> dict:  # stands in for a bug: an exception no handler knows
        raise RuntimeError("secret internal detail")

    with ServerThread(app) as srv:
        yield srv


@pytest.fixture
def http(guarded):
    with httpx.Client(base_url=guarded.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def test_requests_need_the_bearer_key(guarded):
    right = openai.OpenAI(base_url=guarded.base_url, api_key=KEY, max_retries=0)
    assert right.completions.create(**SMALL).usage.completion_tokens > 0
    for key in ("wrong", KEY + "x", KEY[:-1]):
        with pytest.raises(openai.AuthenticationError) as e:
            openai.OpenAI(base_url=guarded.base_url, api_key=key, max_retries=0).models.list()
        assert e.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{guarded.base_url}/models").status_code == 401  # no header at all


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(http):
    garbage = b"{" + b"x" * 300_000  # not even JSON: a parser would have said 400
    r = http.post("/completions", content=garbage, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "serve.max_body_bytes" in r.json()["error"]["message"]
    assert http.post("/completions", json=SMALL).status_code == 200  # same connection, fine

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(30):
            yield b"x" * 10_000

    r = http.post("/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert http.post("/completions", json=SMALL).status_code == 200


def test_memory_stays_flat_across_many_oversized_requests(http):
    huge = json.dumps({**SMALL, "prompt": "x = 1\n" * 200_000})  # 1.2 MB: over the body limit
    long = {**SMALL, "prompt": "x = 1\n" * 25_000}  # 175 KB as JSON: under it, far over 64 tokens

    def burst(n: int) -> None:
        for _ in range(n):
            r = http.post("/completions", content=huge, headers={"content-type": "application/json"})
            assert r.status_code == 413
            r = http.post("/completions", json=long)
            assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"

    rss = psutil.Process().memory_info().rss  # server and client share this process
    burst(5)  # warm-up: allocator pools, connection, JSON buffers
    warm = psutil.Process().memory_info().rss
    burst(30)
    grown = psutil.Process().memory_info().rss - warm
    assert grown < 20 * 2**20, f"RSS grew {grown / 2**20:.0f} MB over 60 oversized requests " \
                               f"(warm-up: {(warm - rss) / 2**20:.0f} MB)"


def test_an_unexpected_error_is_a_json_500_and_the_connection_survives(http):
    r = http.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert http.post("/completions", json=SMALL).status_code == 200  # not reset


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_key(host):
    check_bind(host, "HARNESS_SERVE_API_KEY", None, allow_unauthenticated=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_listening_beyond_loopback_needs_a_key_or_an_explicit_waiver(host):
    with pytest.raises(HarnessError, match=r"MY_KEY.*serve\.allow_unauthenticated=true"):
        check_bind(host, "MY_KEY", None, allow_unauthenticated=False)
    check_bind(host, "MY_KEY", "a-secret", allow_unauthenticated=False)
    check_bind(host, "MY_KEY", None, allow_unauthenticated=True)
