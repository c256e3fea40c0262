"""The OpenAI-compatible server, driven over loopback HTTP by the real `openai` client."""

from __future__ import annotations

import math

import openai
import pytest
import torch
from conftest import make_adapter
from peft import PeftModel
from server_side import record_generations
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.errors import HarnessError
from harness.serve.app import Limits, ServerThread, create_app
from harness.serve.postprocess import Cursor, clean

CHAT = [{"role": "user", "content": "Write a function that adds two numbers."}]


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, str]:
    return {f"lora{i}": make_adapter(tiny_model, str(tmp_path_factory.mktemp(f"lora{i}")), i)
            for i in (1, 2)}


@pytest.fixture(scope="module")
def server(tiny_model, adapters):
    with ServerThread(create_app(tiny_model, adapters=adapters)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)


def _first_token_logprobs(client: openai.OpenAI, model: str) -> dict[str, float]:
    r = client.chat.completions.create(model=model, messages=CHAT, max_tokens=1, temperature=0,
                                       logprobs=True, top_logprobs=5)
    return {t.token: t.logprob for t in r.choices[0].logprobs.content[0].top_logprobs}


def test_lists_base_and_adapters(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"base", "lora1", "lora2"}
    assert models["lora1"].parent == "base"


def test_chat_completion_returns_text_and_usage(client):
    r = client.chat.completions.create(model="base", messages=CHAT, max_tokens=4, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_greedy_matches_transformers_and_seeded_sampling_repeats(client, tiny_model):

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = tok(tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False, return_tensors="pt").input_ids
    expected = tok.decode(model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1]:],
                          skip_special_tokens=True)
    r = client.chat.completions.create(model="base", messages=CHAT, max_tokens=6, temperature=0)
    assert r.choices[0].message.content == expected

    def sample(seed: int) -> str:
        return client.chat.completions.create(model="base", messages=CHAT, max_tokens=6,
                                              temperature=1.0, top_p=0.9, seed=seed
                                              ).choices[0].message.content

    assert sample(3) == sample(3)


def test_stop_strings_are_honoured(client):
    # Seeded sampling repeats itself, and unlike the random model's greedy reply it varies.
    settings = {"model": "base", "messages": CHAT, "max_tokens": 10, "temperature": 1.0, "seed": 1}
    full = client.chat.completions.create(**settings, logprobs=True)
    text = full.choices[0].message.content
    stop = full.choices[0].logprobs.content[2].token.strip()  # a string the reply contains
    assert stop and text.find(stop) > 0
    r = client.chat.completions.create(**settings, stop=[stop, "never-generated"])
    assert r.choices[0].message.content == text[: text.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_fim_completion_builds_the_qwen_prompt(client, tiny_model):

    prefix, suffix = "def add(a, b):\n    ", "\n    return total\n"
    r = client.completions.create(model="base", prompt=prefix, suffix=suffix, max_tokens=5,
                                  temperature=0)
    assert r.object == "text_completion" and isinstance(r.choices[0].text, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    fim = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    assert r.usage.prompt_tokens == len(AutoTokenizer.from_pretrained(tiny_model)(fim).input_ids)
    plain = client.completions.create(model="base", prompt=prefix, max_tokens=5, temperature=0)
    assert plain.usage.prompt_tokens < r.usage.prompt_tokens


@pytest.mark.parametrize("choices", [["1", "2", "3", "4", "5"], ["yes", "no", "not sure at all"]])
def test_guided_choice_returns_a_choice_with_normalised_logprobs(client, choices):
    for content in ("Rate this code.", "def f(): pass", "Is this right?"):
        r = client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": content}], max_tokens=1,
            logprobs=True, top_logprobs=5, extra_body={"guided_choice": choices})
        answer = r.choices[0].message.content
        assert answer in choices
        top = r.choices[0].logprobs.content[0].top_logprobs
        assert {t.token for t in top} == set(choices)
        assert math.isclose(sum(math.exp(t.logprob) for t in top), 1.0, rel_tol=1e-4)
        assert max(top, key=lambda t: t.logprob).token == answer


@pytest.mark.parametrize("model", ["base", "lora1"])
def test_guided_choice_scores_equal_each_choice_scored_after_the_prompt(
        client, tiny_model, adapters, model):
    """The server runs the prompt once and scores the choices from its cache: the result must
    be what a plain forward pass over prompt + choice gives, for every (multi-token) choice."""
    choices = ["yes", "no", "not sure at all", "4"]
    r = client.chat.completions.create(
        model=model, messages=CHAT, max_tokens=8, logprobs=True, top_logprobs=len(choices),
        extra_body={"guided_choice": choices})
    got = {t.token: t.logprob for t in r.choices[0].logprobs.content[0].top_logprobs}
    tok = AutoTokenizer.from_pretrained(tiny_model)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model)
    if model != "base":
        lm = PeftModel.from_pretrained(lm, adapters[model])
    prompt = tok.encode(tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False)
    totals = []
    for c in choices:
        ids = tok.encode(c, add_special_tokens=False)
        with torch.inference_mode():
            logp = torch.log_softmax(lm(torch.tensor([prompt + ids])).logits[0].float(), -1)
        totals.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(ids)))
    want = torch.log_softmax(torch.tensor(totals), 0)
    for c, w in zip(choices, want.tolist(), strict=True):
        assert math.isclose(got[c], w, abs_tol=1e-3), (c, got[c], w)


def test_unknown_model_is_404_and_bad_requests_are_400(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=CHAT, max_tokens=1)
    assert e.value.body["code"] == "model_not_found" and "nope" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="base", messages=CHAT, max_tokens=1, n=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="base", messages="not a list", max_tokens=1)


def test_adapters_are_selected_by_name(client):
    base = _first_token_logprobs(client, "base")
    lora1, lora2 = _first_token_logprobs(client, "lora1"), _first_token_logprobs(client, "lora2")

    def differ(a: dict[str, float], b: dict[str, float]) -> bool:
        return a.keys() != b.keys() or any(abs(a[k] - b[k]) > 1e-3 for k in a)

    assert differ(base, lora1) and differ(base, lora2) and differ(lora1, lora2)
    assert not differ(_first_token_logprobs(client, "base"), base)  # adapters disabled again
    assert not differ(_first_token_logprobs(client, "lora1"), lora1)


def _base_weights(server) -> dict[str, tuple[int, int, float]]:
    model = server.app.state.engine.model
    return {n: (id(p), p.data_ptr(), float(p.detach().double().sum()))
            for n, p in model.named_parameters() if "lora_" not in n}


def test_switching_adapters_per_request_keeps_the_same_base_weights(client, server):
    before = _base_weights(server)
    outputs = {name: _first_token_logprobs(client, name)
               for name in ("lora1", "base", "lora2", "lora1", "base")}
    # the same tensors, at the same addresses, with the same values: nothing was reloaded,
    # copied or merged into the base to serve an adapter
    assert _base_weights(server) == before
    assert outputs["base"] != outputs["lora1"] != outputs["lora2"]


def test_completions_are_cleaned_up_and_stop_early(client):
    prefix, suffix = "def scale(values, k):\n    ", "\n    return result\n\n\ndef other():\n"
    changed = 0
    for seed in range(6):
        settings = {"model": "lora1", "prompt": prefix, "suffix": suffix, "max_tokens": 24,
                    "temperature": 1.0, "seed": seed}
        raw = client.completions.create(**settings)  # raw by default: what eval needs
        done = client.completions.create(**settings, extra_body={"postprocess": True})
        expected = clean(raw.choices[0].text, Cursor.of(prefix, suffix))
        assert done.choices[0].text == expected.text
        assert done.usage.completion_tokens <= raw.usage.completion_tokens
        if expected.ended:
            assert done.choices[0].finish_reason == "stop"
        changed += expected.text != raw.choices[0].text
    assert changed  # the random model's text does hit the rules


MALFORMED = [  # field sent -> a word the 400's message must contain
    ({"guided_choice": []}, "guided_choice"),
    ({"guided_choice": [str(i) for i in range(17)]}, "guided_choice"),
    ({"seed": 2**64}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
    ({"stop": ["x"] * 65}, "stop"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"messages": "not a list"}, "messages"),
    ({"messages": [{"role": "user", "content": {"not": "text"}}]}, "chat template"),
    ({"n": 2}, "n=1"),
]


@pytest.mark.parametrize(("field", "word"), MALFORMED, ids=[w for _, w in MALFORMED])
def test_malformed_fields_get_a_clear_400_and_the_connection_stays_usable(server, field, word):
    import httpx

    valid = {"model": "base", "messages": CHAT, "max_tokens": 2, "temperature": 0}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        r = http.post("/chat/completions", json={**valid, **field})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert word in error["message"] and error["type"] == "invalid_request_error"
        assert "Traceback" not in r.text
        # the same keep-alive connection answers the next request (a 500 used to reset it)
        assert http.post("/chat/completions", json=valid).status_code == 200


def test_a_seed_at_the_edge_of_the_range_is_accepted(client):
    for seed in (2**64 - 1, -(2**63)):
        r = client.chat.completions.create(model="base", messages=CHAT, max_tokens=2, seed=seed)
        assert r.usage.completion_tokens > 0


@pytest.fixture(scope="module")
def limited(tiny_model):
    """A server with small limits: 6 new tokens, 40 prompt tokens."""
    with ServerThread(create_app(tiny_model, limits=Limits(max_prompt_tokens=40,
                                                          max_tokens=6))) as srv:
        yield openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)


def test_max_tokens_is_cut_to_the_configured_limit(limited):
    r = limited.completions.create(model="base", prompt="def f(x):\n", max_tokens=10**9,
                                   temperature=0)
    assert r.usage.completion_tokens <= 6
    chat = limited.chat.completions.create(model="base", messages=CHAT, temperature=0)  # no max
    assert chat.usage.completion_tokens <= 6


def test_a_prompt_over_the_token_limit_is_refused_with_the_setting_named(limited):
    with pytest.raises(openai.BadRequestError) as e:
        limited.completions.create(model="base", prompt="x = 1\n" * 100, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    assert "serve.max_prompt_tokens" in e.value.body["message"]
    ok = limited.completions.create(model="base", prompt="x = 1\n", max_tokens=1)
    assert ok.usage.prompt_tokens <= 40


def test_a_guided_choice_longer_than_max_tokens_is_refused(limited):
    with pytest.raises(openai.BadRequestError) as e:
        limited.chat.completions.create(
            model="base", messages=[{"role": "user", "content": "Rate."}], max_tokens=1,
            extra_body={"guided_choice": ["ok", "a much longer answer than six tokens, surely"]})
    assert "guided_choice" in e.value.body["message"]


@pytest.mark.parametrize("bad", [{"max_tokens": 0}, {"max_body_bytes": -1},
                                 {"max_prompt_tokens": "many"}, {"max_tokens": True},
                                 {"max_active": 0}])
def test_limits_must_be_positive_integers(bad):
    with pytest.raises(HarnessError, match=f"serve.{next(iter(bad))}"):
        Limits(**bad)


@pytest.mark.slow
def test_a_generation_stops_when_its_client_goes_away(client, server, monkeypatch):
    import time

    finished = record_generations(server.app.state.engine, monkeypatch)
    impatient = client.with_options(timeout=1.0)
    with pytest.raises(openai.APITimeoutError):  # the client hangs up after a second
        impatient.completions.create(model="base", prompt="def f(x):\n", max_tokens=1000,
                                     temperature=0)
    deadline = time.monotonic() + 120
    while not finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished and finished[0] < 1000  # it did not go on for the 1000 tokens asked


def test_a_model_without_fim_sentinels_completes_prefixes_and_refuses_a_suffix(tiny_model):
    """model.fim=left_to_right (the offline SmolLM2): `harness serve` and the local judge start."""
    with ServerThread(create_app(tiny_model, fim="left_to_right")) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        assert c.completions.create(model="base", prompt="def add(a, b):", max_tokens=4,
                                    temperature=0).choices[0].text is not None
        with pytest.raises(openai.BadRequestError, match="no fill-in-the-middle tokens"):
            c.completions.create(model="base", prompt="def add(a, b):", suffix="\n", max_tokens=4)
