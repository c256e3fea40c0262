"""`harness merge-adapters`: real adapters combined with PEFT, then evaluated like a candidate."""

from __future__ import annotations

import shutil

import pytest
import torch
from registry_runs import compose, make_run

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json, sha256_tree, umask
from harness.registry.merge import merge_adapters
from harness.rundir import MANIFEST, METRICS, STAGE_JSON
from harness.stages import run_stage

PROMPT = "def add(a, b):\n    return"


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {name: make_run(root, name, tiny_model, seed=seed)
            for name, seed in (("alpha", 11), ("beta", 12))}


def logits(base: str, adapter) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(base)(PROMPT, return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        return model(ids).logits[0, -1]


def merge(runs, name: str, harness_cache, *overrides: str):
    root = runs["alpha"].parent
    cfg = compose(root / name, [f"cache_dir={harness_cache}", f"run_name={name}",
                                "registry.merge.sources=[alpha,beta]", *overrides])
    return cfg, merge_adapters(cfg)


def test_a_linear_merge_with_weights_one_and_zero_is_the_first_adapter(runs, tiny_model,
                                                                        harness_cache):
    _, out = merge(runs, "only-alpha", harness_cache, "registry.merge.weights=[1.0,0.0]")
    merged = runs["alpha"].parent / "only-alpha"
    assert torch.allclose(logits(tiny_model, out["adapter"]),
                          logits(tiny_model, runs["alpha"] / "train" / "adapter"), atol=1e-5)
    manifest = read_json(merged / "train" / MANIFEST)
    assert manifest["method"] == "merge:linear" and manifest["base_model"] == tiny_model
    assert manifest["adapter_sha256"] == sha256_tree(merged / "train" / "adapter")
    assert {p.stat().st_mode & 0o777 for p in (merged / "train" / "adapter").iterdir()} == {0o666 & ~umask()}
    assert [s["weight"] for s in manifest["sources"]] == [1.0, 0.0]
    assert read_json(merged / "mine" / STAGE_JSON) == read_json(runs["alpha"] / "mine" / STAGE_JSON)


def test_a_ties_merge_is_evaluated_like_any_candidate(runs, tiny_model, harness_cache):
    cfg, out = merge(runs, "ties", harness_cache, "registry.merge.method=ties",
                     "registry.merge.weights=[0.6,0.4]", "registry.merge.density=0.5",
                     "eval.humaneval.limit=1", "eval.mbpp.enabled=false", "eval.fim.enabled=false",
                     "eval.judge.enabled=false", "eval.humaneval_infill.enabled=false",
                     "eval.sandbox.self_check=false",
                     "eval.max_new_tokens=8")
    merged = logits(tiny_model, out["adapter"])
    for other in (None, runs["alpha"] / "train" / "adapter", runs["beta"] / "train" / "adapter"):
        assert not torch.allclose(merged, logits(tiny_model, other), atol=1e-4)
    run_stage(cfg, "eval")  # the eval stage takes the merged run without retraining
    metrics = read_json(runs["alpha"].parent / "ties" / "eval" / METRICS)
    assert metrics["settings"]["adapter"] == out["adapter"]
    assert metrics["humaneval"]["candidate"]["n"] == 1


def test_bad_merge_settings_are_refused_with_the_fix(runs, harness_cache, tmp_path):
    with pytest.raises(HarnessError, match="method='mean'"):
        merge(runs, "bad1", harness_cache, "registry.merge.method=mean")
    with pytest.raises(HarnessError, match="3 values for 2 sources"):
        merge(runs, "bad2", harness_cache, "registry.merge.weights=[1,1,1]")
    with pytest.raises(HarnessError, match="neither a run"):
        merge(runs, "bad3", harness_cache, "registry.merge.sources=[alpha,nowhere]")
    with pytest.raises(HarnessError, match="holds a trained adapter"):  # never overwrite training
        merge(runs, "beta", harness_cache)
    foreign = tmp_path / "foreign-adapter"
    shutil.copytree(runs["beta"] / "train" / "adapter", foreign)
    config = read_json(foreign / "adapter_config.json")
    atomic_write_json(foreign / "adapter_config.json",
                      {**config, "base_model_name_or_path": "Qwen/Qwen2.5-Coder-7B-Instruct"})
    with pytest.raises(HarnessError, match="different base models"):
        merge(runs, "bad4", harness_cache, f"registry.merge.sources=[alpha,{foreign}]")
