"""Requests take turns on the shared model in arrival order, one decoding step each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from conftest import make_adapter
from server_side import record_generations

from harness.serve.app import Limits, ServerThread, create_app
from harness.serve.fair import FairLock


def test_the_lock_goes_to_waiters_in_arrival_order():
    lock, order = FairLock(), []

    def worker(i: int) -> None:
        with lock:
            order.append(i)

    lock.acquire()
    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=worker, args=(i,)))
        threads[-1].start()
        while len(lock._waiters) < i + 1:  # the thread is queued before the next one starts
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join()
    assert order == list(range(6)) and not lock.locked()


def test_a_releasing_thread_does_not_jump_the_queue():
    lock, turns = FairLock(), []
    lock.acquire()
    waiter = threading.Thread(target=lambda: (lock.acquire(), turns.append("waiter"),
                                              lock.release()))
    waiter.start()
    while not lock._waiters:
        time.sleep(0.001)
    lock.release()
    lock.acquire()  # what a decode loop does between two steps
    turns.append("releaser")
    lock.release()
    waiter.join()
    assert turns == ["waiter", "releaser"]
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    adapter = make_adapter(tiny_model, str(tmp_path_factory.mktemp("lora")), 1)
    with ServerThread(create_app(tiny_model, adapters={"lora": adapter})) as srv:
        yield srv, openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0,
                                 timeout=300)


LONG = {"model": "lora", "prompt": "def f(x):\n", "max_tokens": 40, "temperature": 0}
SHORT = {"model": "base", "prompt": "import os\n", "max_tokens": 4, "temperature": 0}


@pytest.mark.slow
def test_a_short_request_finishes_while_a_long_one_is_still_generating(served, monkeypatch):
    server, client = served
    alone = {k: client.completions.create(**r) for k, r in (("long", LONG), ("short", SHORT))}
    assert alone["long"].usage.completion_tokens == LONG["max_tokens"]  # no early stop
    engine = server.app.state.engine
    finished = record_generations(engine, monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(client.completions.create, **LONG)
        while not engine.lock.locked():  # the long request is generating
            time.sleep(0.001)
        short = client.completions.create(**SHORT)
        long = long.result()
    # with one lock held for a whole request, the short one waited for all 40 tokens
    assert finished == [SHORT["max_tokens"], LONG["max_tokens"]]
    # interleaved steps switch between the adapter and the base; neither output changes
    assert short.choices[0].text == alone["short"].choices[0].text
    assert long.choices[0].text == alone["long"].choices[0].text


@pytest.mark.slow
def test_max_active_bounds_the_generations_in_progress(tiny_model, monkeypatch):
    """With one place, a short request waits for the long one: its KV cache never coexists."""
    with ServerThread(create_app(tiny_model, limits=Limits(max_active=1))) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        engine = srv.app.state.engine
        finished = record_generations(engine, monkeypatch)
        long = {**LONG, "model": "base", "max_tokens": 20}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.completions.create, **long)
            while not engine.lock.locked():
                time.sleep(0.001)
            client.completions.create(**SHORT)
            assert pending.result().usage.completion_tokens == 20
    assert finished == [20, SHORT["max_tokens"]]
