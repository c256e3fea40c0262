"""llama.cpp itself as the second engine: the f16 export, loaded by llama-cpp-python, tokenizes
like the merged model and greedily continues with the same tokens as transformers reading the
same file. Skipped where llama-cpp-python is not installed (it is an sdist: a long native build,
`pip install llama-cpp-python`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_runs import build_qwen2, merged_llama

from harness.export.gguf_file import write_gguf
from harness.export.verify import CODE_PROMPTS, greedy, load_gguf
from harness.export.vocab import read_vocab

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow
FIM = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"}
TEXTS = [*CODE_PROMPTS, "<|im_start|>user\nReverse a string.<|im_end|>\n<|im_start|>assistant\n",
         "<|fim_prefix|>def mean(xs):\n    total = <|fim_suffix|>\n    return total / len(xs)\n<|fim_middle|>"]
NEW_TOKENS = 16


def llama_cpp_greedy(llm, ids: list[int], n: int, stop: set[int]) -> list[int]:
    """Greedy decoding by hand (argmax of llama.cpp's logits), so no sampler is involved."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if token in stop:
            break
        out.append(token)
        llm.eval([token])
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_cpp_reads_the_f16_export_like_transformers(arch, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    model_dir = (merged_llama(tiny_model, tmp_path / "m") if arch == "llama"
                 else build_qwen2(tiny_model, tmp_path / "m"))
    n_vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    out = tmp_path / "gguf"
    out.mkdir()
    write_gguf(Path(model_dir), out / "m-f16.gguf", "f16", read_vocab(Path(model_dir), n_vocab, FIM), "m")
    llm = llama_cpp.Llama(str(out / "m-f16.gguf"), n_ctx=512, n_threads=2, logits_all=True,
                          verbose=False)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model, _ = load_gguf(out / "m-f16.gguf")
    stop = {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
        expected = greedy(model, [ids], NEW_TOKENS, sorted(stop), tok.pad_token_id)[0]
        assert llama_cpp_greedy(llm, ids, NEW_TOKENS, stop) == expected, text
