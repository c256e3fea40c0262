"""`harness merge`: the adapter folded into the base weights, loadable by stock transformers,
with the same logits as base + adapter."""

from __future__ import annotations

from pathlib import Path

from conftest import make_cfg

from harness.io import read_json, umask
from harness.rundir import MANIFEST
from harness.train.merge import merge

TRAIN = ["data.format.max_length=128", "train.batch_size=4", "train.lr=1e-2", "train.max_steps=4",
         "train.warmup=0", "train.report_to=none"]


def test_merged_model_loads_with_stock_transformers_and_matches_the_adapter(tmp_path, history_repo,
                                                                            harness_cache):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_cfg(tmp_path / "run", history_repo, TRAIN, harness_cache)
    summary = merge(cfg)  # trains first: this run had no adapter yet
    out = tmp_path / "run" / "merged"
    assert Path(summary["path"]) == out.resolve() and not (tmp_path / "run" / "merged.partial").exists()
    manifest = read_json(tmp_path / "run" / "train" / MANIFEST)
    assert read_json(out / "merge.json")["adapter_sha256"] == manifest["adapter_sha256"]
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~umask()}  # not 0600

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and not any(n for n, _ in merged.named_modules() if "lora" in n)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in merged.generation_config.eos_token_id
    base = AutoModelForCausalLM.from_pretrained(manifest["base_model"])
    adapted = PeftModel.from_pretrained(base, str(tmp_path / "run" / "train" / "adapter")).eval()
    ids = tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, got = adapted(ids).logits, merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(manifest["base_model"]).eval()(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3  # the adapter did change the model
    assert merge(cfg) == summary  # up to date: nothing redone
