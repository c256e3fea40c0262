"""HumanEval infilling: fixed holes from the canonical solutions, the model's own FIM tokens,
and execution decides."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.errors import HarnessError
from harness.eval.infill import TASKS, clean_middle, load_infill
from harness.format.fim import fim_prompt_ids, fim_tokens
from harness.models.load import load_tokenizer
from harness.sandbox.execute import Sandbox


def test_holes_are_fixed_by_the_seed_and_cut_whole_lines():
    single, again = load_infill("single", 7, limit=20), load_infill("single", 7, limit=20)
    assert single == again and len(single) == 20
    assert single != load_infill("single", 8, limit=20)
    multi = load_infill("multi", 7, max_lines=4, limit=20)
    for item in single:
        assert item.task == TASKS["single"] and item.middle.count("\n") == 1 and item.middle.strip()
    for item in multi:
        assert item.task == TASKS["multi"] and 2 <= item.middle.count("\n") <= 4
    assert {i.task_id for i in multi} < {i.task_id for i in single}  # one-line solutions: no multi
    assert len(load_infill("multi", 7)) == 127 and len(load_infill("single", 7)) == 164


def test_the_expected_middle_passes_and_a_wrong_one_fails():
    items = load_infill("single", 1234, limit=12) + load_infill("multi", 1234, limit=12)
    box = Sandbox(timeout_s=10, workers=2)
    right = box.run_many([i.program(i.middle) for i in items])
    assert [r.status for r in right] == ["passed"] * len(items)
    indent = [i.middle[: len(i.middle) - len(i.middle.lstrip())] for i in items]
    wrong = box.run_many([i.program(f"{pad}raise ValueError\n") for i, pad in zip(items, indent, strict=True)])
    assert sum(r.passed for r in wrong) == 0


def test_generations_become_whole_lines():
    assert clean_middle("    return x\n    more\n", single_line=True) == "    return x\n"
    assert clean_middle("    return x", single_line=True) == "    return x\n"
    assert clean_middle("    a = 1\n    b = 2", single_line=False) == "    a = 1\n    b = 2\n"


def test_prompts_use_the_models_own_fim_tokens(tiny_model):
    tok = load_tokenizer(tiny_model)
    cfg = OmegaConf.create({"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>",
                            "middle": "<|fim_middle|>", "end": "<|endoftext|>"})
    toks = fim_tokens(tok, cfg)
    item = load_infill("multi", 1234, limit=1)[0]
    ids = fim_prompt_ids(tok, toks, item.prefix, item.suffix, 4096)
    assert ids[0] == toks.prefix and ids[-1] == toks.middle and toks.suffix in ids
    text = tok.decode(ids)
    assert item.prefix[-40:] in text and item.suffix[:40] in text and item.middle not in text


def test_unknown_spans_are_refused():
    with pytest.raises(HarnessError, match="unknown infill span"):
        load_infill("random", 1)


def test_an_infill_row_says_whether_the_program_passed_and_how_close_the_text_came():
    from harness.eval.runner import score_generations

    item = load_infill("single", 1234, limit=1)[0]
    right, wrong = score_generations([item], [[item.middle, "    pass\n"]], Sandbox(),
                                     model="base", engine="hf", prompt_hashes=["h"],
                                     expected=[item.middle])
    assert right["passed"] and right["exact_match"] == 1.0 and right["expected"] == item.middle
    assert not wrong["passed"] and wrong["edit_similarity"] < 1.0
    # without an expected text (a benchmark problem), the text-match fields stay empty
    plain = score_generations([item], [[item.middle]], Sandbox(), model="base", engine="hf",
                              prompt_hashes=["h"])
    assert plain[0]["passed"] and plain[0]["expected"] is None and plain[0]["exact_match"] is None
