"""The OpenAI-compatible server, driven over loopback HTTP by the real `openai` client."""

from __future__ import annotations

import math

import openai
import pytest
from conftest import make_adapter

from harness.serve.app import ServerThread, create_app
from harness.serve.postprocess import Cursor, clean

CHAT = [{"role": "user", "content": "Write a function that adds two numbers."}]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    adapters = {f"lora{i}": make_adapter(tiny_model, str(tmp_path_factory.mktemp(f"lora{i}")), i)
                for i in (1, 2)}
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    from transformers import AutoTokenizer

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
