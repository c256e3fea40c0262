"""Greedy decoding that drops finished rows gives what greedy `generate` gives, token for token."""

from __future__ import annotations

import random

import pytest

from harness.eval.engines.greedy import plain_greedy
from harness.eval.engines.hf import HFEngine
from harness.models.load import load_model, load_tokenizer


@pytest.fixture(scope="module")
def engine(tiny_model):
    tok = load_tokenizer(tiny_model)
    return HFEngine(load_model(tiny_model), tok, batch_size=6, max_new_tokens=24)


@pytest.fixture(scope="module")
def prompts(engine):
    # six prompts of different lengths (left padding and position ids matter) on which the
    # tiny model writes six different texts, so stop strings end them at different steps
    rng = random.Random(0)
    return [[rng.randrange(100, engine.tokenizer.vocab_size) for _ in range(rng.randrange(5, 40))]
            for _ in range(6)]


def both_ways(engine, prompts, stop, **kw) -> tuple[list, list]:
    """The engine's outputs with finished rows dropped, and with greedy generate()."""
    fast = engine.generate(prompts, stop=stop, **kw)
    cfg = engine.model.generation_config
    cfg.renormalize_logits = True  # argmax unchanged, but generate() must run the processor
    try:
        assert not plain_greedy(cfg)
        slow = engine.generate(prompts, stop=stop, **kw)
    finally:
        cfg.renormalize_logits = None
    assert plain_greedy(cfg)
    return [g.outputs for g in fast], [g.outputs for g in slow]


def batch_sizes(engine, run) -> list[int]:
    """The batch size of every forward pass `run` makes."""
    seen: list[int] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("stop", [("c",), ("c", "w", "h h h"), ()])
def test_rows_leave_the_batch_when_done_and_the_text_is_generates(engine, prompts, stop):
    sizes = batch_sizes(engine, lambda: engine.generate(prompts, stop=stop))
    fast, slow = both_ways(engine, prompts, stop)
    assert fast == slow
    if stop:  # rows stopped at different steps, and the batch shrank as they did
        assert sizes[0] == 6 and sizes[-1] < 6 and sizes == sorted(sizes, reverse=True)
        assert len({len(o[0]) for o in fast}) > 2
    else:  # nothing stops early: every step runs the whole batch, as generate does
        assert sizes == [6] * 24


def test_a_stop_string_that_starts_in_the_prompt_ends_the_row_as_in_generate(engine, prompts):
    tok = engine.tokenizer
    prompt = prompts[0]
    first = engine.generate([prompt], max_new_tokens=1)[0].outputs[0]
    spanning = (tok.decode(prompt[-1:])[-1] + first[:1],)  # the prompt's last char + the first
    fast, slow = both_ways(engine, [prompt], spanning, max_new_tokens=8)
    assert fast == slow == [[first]]  # generate stops after one token, and so do we


def test_a_row_ends_once_done_holds_and_its_text_is_a_prefix_of_the_full_one(engine, prompts):
    # next-line completion reads only the first line (fim.has_first_line): rows stop there
    def done(text: str) -> bool:
        return len(text) >= 12

    full = engine.generate(prompts)
    sizes = batch_sizes(engine, lambda: engine.generate(prompts, done=done))
    short = engine.generate(prompts, done=done)
    for f, s in zip(full, short, strict=True):
        assert f.outputs[0].startswith(s.outputs[0])
        assert done(s.outputs[0]) or s.outputs[0] == f.outputs[0]
    assert sum(len(s.outputs[0]) < len(f.outputs[0]) for f, s in zip(full, short, strict=True)) > 2
    assert len(sizes) < 24 and sizes[-1] < sizes[0]  # the batch shrank and ended early
