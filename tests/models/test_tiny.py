"""The offline tiny model: a real tokenizer and Llama that transformers loads like any other."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.errors import HarnessError
from harness.models.load import load_model, resolve_model_path
from harness.models.tiny import SPECIAL_TOKENS, build_tiny_model


def test_tokenizer_round_trips_code_and_keeps_special_tokens_whole(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    code = "def f(x):\n    return {'é': x ** 2}  # ünïcode\n"
    assert tok.decode(tok(code)["input_ids"]) == code
    for special in SPECIAL_TOKENS:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert "{% generation %}" in tok.chat_template and tok.eos_token == "<|im_end|>"


def test_model_is_a_small_causal_lm_that_generates(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tok = AutoTokenizer.from_pretrained(tiny_model)
    out = model.generate(**tok("def add(a, b):", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 0


def test_second_build_is_a_cache_hit(tiny_model, harness_cache):
    before = {p: p.stat().st_mtime_ns for p in harness_cache.rglob("*") if p.is_file()}
    assert str(build_tiny_model(harness_cache)) == tiny_model
    assert {p: p.stat().st_mtime_ns for p in harness_cache.rglob("*") if p.is_file()} == before


def test_missing_model_paths_and_non_causal_models_are_refused(tmp_path, tiny_model):
    from omegaconf import OmegaConf

    with pytest.raises(HarnessError, match="no model there"):
        resolve_model_path(OmegaConf.create({"name_or_path": str(tmp_path / "nope")}), str(tmp_path))
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(HarnessError, match="not a causal LM"):
        load_model(str(tmp_path / "bert"))
