"""Trained runs and merged models for the export tests: the tiny Llama with a real LoRA adapter
(held-out FIM files mined beside it), and a tiny Qwen2 built here from a config with a
Qwen2-style tokenizer (Qwen2's split regex over the tiny model's vocabulary)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_adapter

from harness.io import atomic_write_json, sha256_tree, write_jsonl
from harness.rundir import MANIFEST, MINE_STATS, RECORDS, write_stage

HELD_OUT = "".join(f"def scale_{i}(values, factor):\n    result = []\n    for v in values:\n"
                   f"        result.append(v * factor + {i})\n    return result\n\n\n"
                   for i in range(6))


def trained_run(root: Path, base: str, seed: int = 1) -> Path:
    """runs/<name>/ with mine (held-out FIM files) and a finished train stage."""
    from transformers import AutoTokenizer

    run = root / f"run{seed}"
    records = [{"id": f"fim-{i}", "kind": "fim_source", "split": "test", "path": f"pkg/m{i}.py",
                "shas": [f"{i}" * 40], "content": HELD_OUT, "added_lines": list(range(1, 40))}
               for i in range(2)]
    write_jsonl(run / "mine" / RECORDS, records)
    atomic_write_json(run / "mine" / MINE_STATS, {"repo": "project"})
    for name in ("mine", "format"):
        write_stage(run / name, name, f"test-{name}", {})
    adapter = run / "train" / "adapter"
    make_adapter(base, adapter, seed)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(adapter))
    atomic_write_json(run / "train" / MANIFEST, {
        "base_model": base, "adapter_sha256": sha256_tree(adapter),
        "chat_template": {"end_of_turn": "<|im_end|>"}})
    write_stage(run / "train", "train", "test-train", {})
    return run


def qwen2_tokenizer(tiny: str):
    """The tiny vocabulary and merges behind Qwen2's own tokenizer class (NFC, Qwen2 regex)."""
    from transformers import Qwen2Tokenizer

    from harness.models.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    model = json.loads((Path(tiny) / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]],
                         unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[1:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_qwen2(tiny: str, out: Path) -> Path:
    """A 2-layer Qwen2ForCausalLM (q/k/v biases, untied head, GQA) with random weights."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = qwen2_tokenizer(tiny)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=None,
                         eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out



def merged_llama(tiny_model: str, root: Path) -> Path:
    """The tiny Llama with a random LoRA adapter merged in, saved as `harness merge` saves it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = make_adapter(tiny_model, root / "adapter", seed=3)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    model.merge_and_unload().save_pretrained(str(root / "merged"))
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(str(root / "merged"))
    return root / "merged"
