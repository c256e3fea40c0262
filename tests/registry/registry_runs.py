"""Finished runs for the registry tests: a real PEFT adapter on the tiny model, the training
manifest that hashes it, and the gate verdict that decides whether it may be promoted."""

from __future__ import annotations

from pathlib import Path

import conftest
from conftest import make_cfg

from harness.io import atomic_write_json, sha256_tree
from harness.rundir import (
    DATASET_CARD,
    MANIFEST,
    METRICS,
    MINE_STATS,
    RECORDS,
    VERDICT,
    write_stage,
)


def compose(run_dir: Path, overrides: list[str] = ()):
    return make_cfg(run_dir, overrides=list(overrides))


def make_adapter(base: str, out: Path, seed: int) -> Path:
    """A random-B LoRA adapter saved with the tokenizer, the way the train stage saves it."""
    from transformers import AutoTokenizer

    conftest.make_adapter(base, out, seed)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out))
    return out


def _stage(path: Path, name: str) -> None:
    write_stage(path, name, f"test-{name}", {})


def make_run(runs: Path, name: str, base: str, seed: int, decision: str = "deploy",
             repo: str = "project") -> Path:
    """runs/<name>/ with mine, format, train, eval and gate outputs, written in stage order."""
    from transformers import AutoTokenizer

    from harness.format.card import template_hash, tokenizer_hash

    run = runs / name
    atomic_write_json(run / "mine" / MINE_STATS, {"repo": repo, "head": "0" * 40})
    (run / "mine" / RECORDS).write_text("")
    _stage(run / "mine", "mine")
    atomic_write_json(run / "format" / DATASET_CARD, {"content_hash": f"data-{repo}"})
    _stage(run / "format", "format")
    adapter = make_adapter(base, run / "train" / "adapter", seed)
    tok = AutoTokenizer.from_pretrained(base)
    atomic_write_json(run / "train" / MANIFEST, {
        "base_model": base, "base_model_id": "tiny", "base_model_revision": None,
        "tokenizer_hash": tokenizer_hash(tok), "template_hash": template_hash(tok),
        "adapter_sha256": sha256_tree(adapter), "backend": "hf", "method": "lora", "seed": seed,
        "versions": {"transformers": "5.17.0"},
        "config": {"model": {"fim": {"prefix": "<|fim_prefix|>"}}}})
    _stage(run / "train", "train")
    atomic_write_json(run / "eval" / METRICS, {"settings": {"adapter": str(adapter)}})
    _stage(run / "eval", "eval")
    reasons = [] if decision == "deploy" else ["fail: humaneval"]
    atomic_write_json(run / "gate" / VERDICT, {
        "decision": decision, "reasons": reasons, "checks": [], "thresholds_sha256": "f" * 64})
    _stage(run / "gate", "gate")
    return run


def three_runs(tiny_model: str, root: Path) -> dict[str, Path]:
    """Two deployable runs and one the gate refused, for promote / rollback tests."""
    return {"r1": make_run(root, "r1", tiny_model, seed=1),
            "r2": make_run(root, "r2", tiny_model, seed=2),
            "bad": make_run(root, "bad", tiny_model, seed=3, decision="no-deploy")}
