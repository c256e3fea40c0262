"""GGUF files written from merged models of both architectures, read back by transformers (which
reads GGUF the way llama.cpp writes it) and by gguf's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_runs import build_qwen2, merged_llama

from harness.errors import HarnessError
from harness.export import gguf_file, quant
from harness.export.gguf_file import permute_qk, write_gguf
from harness.export.vocab import pre_tokenizer_name, read_vocab

FIM = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"}
TEXTS = ["def f(x):\n    return x + 1  # 123", "<|im_start|>user\nhi<|im_end|>\n",
         "<|fim_prefix|>a = <|fim_suffix|>\nb = 2<|fim_middle|>", "héllo wörld\t\n  \r\n ✓"]


@pytest.fixture(scope="module")
def llama_merged(tiny_model, tmp_path_factory) -> Path:
    return merged_llama(tiny_model, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def qwen2_model(tiny_model, tmp_path_factory) -> Path:
    return build_qwen2(tiny_model, tmp_path_factory.mktemp("qwen2"))


def export(model_dir: Path, file_type: str, tmp_path: Path) -> tuple[Path, dict]:
    n_vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    vocab = read_vocab(model_dir, n_vocab, FIM, "<|im_end|>")
    out = tmp_path / f"m-{file_type}.gguf"
    return out, write_gguf(model_dir, out, file_type, vocab, "m")


def reload(path: Path):
    """The model and tokenizer as transformers reads them from the file alone (the tokenizer
    with the file's CONTROL tokens kept whole, as llama.cpp keeps them)."""
    from harness.export.verify import load_gguf

    return load_gguf(path)


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_f16_holds_exactly_the_f16_rounded_weights_and_the_same_tokenizer(arch, llama_merged,
                                                                          qwen2_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = llama_merged if arch == "llama" else qwen2_model
    path, summary = export(model_dir, "f16", tmp_path)
    gguf_model, gguf_tok = reload(path)
    merged = AutoModelForCausalLM.from_pretrained(str(model_dir))
    for p in merged.parameters():
        p.data = p.data.half().float()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    for text in TEXTS:
        assert gguf_tok(text)["input_ids"] == tok(text)["input_ids"], text
    ids = tok(TEXTS[0])["input_ids"]
    assert (logits(gguf_model, ids) - logits(merged, ids)).abs().max().item() == 0.0
    assert summary["tensor_types"]["F16"] > 0 and not summary["fallbacks"]
    assert gguf_model.config.tie_word_embeddings == merged.config.tie_word_embeddings


def test_metadata_carries_special_tokens_fim_sentinels_and_a_plain_chat_template(llama_merged, tmp_path):
    from gguf import GGUFReader

    path, _ = export(llama_merged, "f16", tmp_path)
    fields = GGUFReader(str(path)).fields

    def value(key):
        f = fields[key]
        part = f.parts[f.data[0]]
        return bytes(part).decode() if f.types[0].name == "STRING" else int(part[0])

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(llama_merged))
    assert value("tokenizer.ggml.pre") == "gpt-2" and value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.eot_token_id") == tok.convert_tokens_to_ids("<|im_end|>")
    assert value("tokenizer.ggml.fim_pre_token_id") == tok.convert_tokens_to_ids("<|fim_prefix|>")
    assert value("tokenizer.ggml.fim_mid_token_id") == tok.convert_tokens_to_ids("<|fim_middle|>")
    assert value("tokenizer.ggml.fim_sep_token_id") == tok.convert_tokens_to_ids("<|file_sep|>")
    template = value("tokenizer.chat_template")
    assert "endgeneration" not in template and "<|im_start|>" in template
    assert value("general.file_type") == quant.file_type("f16")


def test_quantized_rows_the_block_does_not_divide_fall_back_to_f16_and_say_so(llama_merged, tmp_path):
    _, summary = export(llama_merged, "q8_0", tmp_path)
    # the tiny model's MLP is 344 wide: ffn_down's rows cannot be cut into blocks of 32
    assert {f["tensor"] for f in summary["fallbacks"]} == {"blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}
    assert summary["tensor_types"]["Q8_0"] == 13 and summary["tensor_types"]["F32"] == 5
    q4_path, q4 = export(llama_merged, "q4_0", tmp_path)
    assert q4["bytes"] < summary["bytes"] < export(llama_merged, "f16", tmp_path)[1]["bytes"]
    reload(q4_path)  # transformers dequantizes it


def test_llama_rows_are_permuted_the_way_readers_undo_it():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8 * 4, 3)  # 4 heads of dim 8
    undo = LlamaTensorProcessor(config={})._reverse_permute_weights
    assert np.array_equal(undo(permute_qk(w, 4, 2), 4, 2), w)
    assert not np.array_equal(permute_qk(w, 4, 4), w)


def test_a_crash_while_writing_leaves_no_file(llama_merged, tmp_path, monkeypatch):
    calls, convert = [], quant.convert

    def failing(data, qtype):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return convert(data, qtype)

    monkeypatch.setattr(gguf_file.quant, "convert", failing)
    with pytest.raises(OSError):
        export(llama_merged, "f16", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_models_are_refused_before_writing():
    with pytest.raises(HarnessError, match="supports"):
        gguf_file.architecture({"architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(HarnessError, match="rope scaling"):
        gguf_file.architecture({"architectures": ["LlamaForCausalLM"],
                                "rope_parameters": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(HarnessError, match=r"no llama.cpp equivalent"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}})
    with pytest.raises(HarnessError, match=r"export\.types"):
        quant.check_types(["q4_k_m"])
    assert quant.check_types(["q8_0", "f16", "q8_0"]) == ["f16", "q8_0"]
