"""A finished run to report on, built without training: per-sample rows in the eval schema
(harness.eval.records), metrics computed by the eval's and the judge's own summaries, and the
verdict from the real gate stage with frozen thresholds. The candidate is better or worse than
the base by `quality`, so different runs flip different problems and get different verdicts."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import make_cfg

from harness.benchmarks import load_humaneval, load_mbpp
from harness.eval.judging import summarize, summarize_pairwise
from harness.eval.records import match_metrics, pass_metrics, row
from harness.gate import stage as gate_stage
from harness.gate.thresholds import freeze_thresholds
from harness.io import atomic_write_json, sha256_text, write_jsonl
from harness.rundir import (
    DATASET_CARD,
    JUDGE_SCORES,
    MANIFEST,
    METRICS,
    MINE_STATS,
    RECORDS,
    SAMPLES,
    TRAIN_LOG,
    samples,
    write_stage,
)

CRITERIA = ("correctness", "convention_adherence", "completeness")
ITEMS = 12


def compose(run_dir: Path, overrides: list[str] = ()):
    return make_cfg(run_dir, overrides=list(overrides))


def _stage(path: Path, name: str) -> None:
    write_stage(path, name, f"test-{name}", {})


def _codegen(task: str, problems, quality: int, rng: random.Random) -> dict[str, list[dict]]:
    """Base passes the first half; the candidate passes `quality` more (or fewer) problems,
    and up to quality 3 it also breaks problem 0, so both kinds of flip exist."""
    half = len(problems) // 2
    passing = {"base": set(range(half)),
               "candidate": set(range(0 if quality > 3 else 1, half + quality))}
    rows = {}
    for label, passed in passing.items():
        rows[label] = [row(task, p.task_id, label, sha256_text(p.prompt),
                           f"    return solve_{label}_{i}()  # <b>{label}</b>\n",
                           engine="hf", passed=i in passed,
                           status="passed" if i in passed else "failed",
                           error=None if i in passed else "AssertionError: wrong answer",
                           exec_seconds=round(rng.random(), 3))
                       for i, p in enumerate(problems)]
    return rows


def make_run(root: Path, name: str, quality: int = 2, judge: bool = True, pairwise: bool = True,
             fim: bool = True, train_log: bool = True, overrides: list[str] = ()) -> tuple:
    """(cfg, run_dir) of a run whose mine, format, train, eval and gate outputs all exist."""
    run = root / name
    cfg = compose(run, [f"run_name={name}", f"report_dir={root / 'reports' / name}",
                        "gate.decision.min_items=5", *overrides])
    rng = random.Random(quality)
    atomic_write_json(run / "mine" / MINE_STATS, {
        "repo": "project", "head": "a" * 40, "commits_seen": 40, "cutoff": "2024-01-13T12:00:00+00:00",
        "dropped": {"merge": 3, "bot": 2, "near_duplicate": 5}, "files_dropped": {"skipped_path": 1},
        "secrets_redacted": {"AWS Access Key": 1}, "decontaminated": {}, "negatives": 1,
        "kept": {"commit/train": 20, "commit/test": 5, "fim_source/test": 4},
        "sources": {"commit": {"in": 30, "out": 25, "dropped": {"merge": 3, "bot": 2}},
                    "fim_source": {"in": 9, "out": 4, "dropped": {"near_duplicate": 5}}}})
    write_jsonl(run / "mine" / RECORDS, [{"id": "r1", "kind": "commit", "split": "test"}])
    _stage(run / "mine", "mine")
    atomic_write_json(run / "format" / DATASET_CARD, {
        "content_hash": "d" * 64, "examples": {"commit": 20, "fim_psm": 8}, "tokens": 9000,
        "supervised_tokens": 4000, "max_length": 256, "dropped": {"too_long": 2},
        "length_histogram": [{"from": 0, "to": 127, "count": 10}, {"from": 128, "to": 255, "count": 18}],
        "chat_template": {"text": "{{ messages }}"}})
    _stage(run / "format", "format")
    steps = range(1, 11)
    if train_log:
        write_jsonl(run / "train" / TRAIN_LOG,
                    [{"step": s, "loss": 2.0 / s + 0.5} for s in steps] + [{"step": 10, "eval_loss": 0.9}])
    atomic_write_json(run / "train" / MANIFEST, {
        "base_model": "/models/tiny", "base_model_id": "tiny", "base_model_revision": None,
        "tokenizer_hash": "t" * 64, "template_hash": "p" * 64, "dataset_hash": "d" * 64,
        "adapter_sha256": "a" * 64, "backend": "hf", "method": "lora", "device": "cpu",
        "seed": 0, "global_step": 10, "tokens_seen": 5120, "train_loss": 0.9, "first_loss": 2.5,
        "last_loss": 0.7, "eval_loss": 0.9, "wall_seconds": 12.5,
        "versions": {"torch": "2.13.0", "transformers": "5.17.0"},
        "config": {"train": {"lr": 2e-4, "batch_size": 4, "lora": {"r": 16, "alpha": 32}}}})
    _stage(run / "train", "train")

    eval_dir = run / "eval"
    metrics: dict = {"settings": {"engine": "hf", "runner": "harness", "scorer": "sandbox",
                                  "decoding": "greedy", "batch_size": 4, "max_new_tokens": 32,
                                  "prompts_sha256": {"humaneval": "h" * 64}},
                     "sandbox": {"mode": "bwrap"}}
    for task, problems in (("humaneval", load_humaneval(ITEMS)), ("mbpp", load_mbpp(ITEMS))):
        for label, rows in _codegen(task, problems, quality, rng).items():
            write_jsonl(eval_dir / samples(task, label), rows)
            metrics.setdefault(task, {})[label] = pass_metrics(rows, [1])
    if fim:
        for label, hits in (("base", 3), ("candidate", 3 + quality)):
            rows = [row("fim", f"pkg/mod.py@abc:{i}", label, f"h{i}", "x = 1\n", expected="x = 1\n",
                        exact_match=float(i < hits), first_line_exact_match=float(i < hits + 1),
                        edit_similarity=0.5 + 0.04 * (i < hits)) for i in range(ITEMS)]
            write_jsonl(eval_dir / samples("fim", label), rows)
            metrics.setdefault("fim", {})[label] = match_metrics(rows)
    if judge:
        scores = {}
        for label, better in (("base", False), ("candidate", quality > 0)):
            scores[label] = [{"task": "judge", "model": label, "item_id": f"c{i}", "criterion": c,
                              "score": float(2 + i % 3 + better),
                              "weighted_score": None, "rationale": None, "raw": "3",
                              "parse_ok": True, "attempts": 1, "first_try_ok": True,
                              "usage": {"prompt_tokens": 100, "completion_tokens": 1},
                              "cost_usd": 0.0, "cached": False}
                             for i in range(ITEMS) for c in CRITERIA]
            write_jsonl(eval_dir / samples(JUDGE_SCORES, label), scores[label])
        metrics["judge"] = {label: summarize(rows) for label, rows in scores.items()}
        metrics["judge"].update(rubric={"name": "code_change", "version": "2"},
                                settings={"model": "base", "output": "choice"},
                                usage={"calls": 72, "cached_calls": 0, "prompt_tokens": 7200,
                                       "completion_tokens": 72, "spent_usd": 0.0})
        # what eval measures of a judge that meets conf/gate's judge_reliability thresholds
        metrics["judge"]["reliability"] = {"criteria": {c: {
            "pairs": 24, "accuracy": 0.95, "pairwise_accuracy": 0.9, "position_consistency": 0.9,
            "first_position_rate": 0.5, "self_tie_rate": 0.8, "self_pairs": ITEMS}
            for c in CRITERIA}}
        metrics["judge"]["length_bias"] = {c: {"spearman": 0.1, "n": 2 * ITEMS} for c in CRITERIA}
        if pairwise:
            outcomes = ("win", "tie", "loss", "win")
            pairs = [{"task": "judge_pairwise", "item_id": f"c{i}", "criterion": c,
                      "outcome": outcomes[i % 4], "inconsistent": i % 4 == 1,
                      "preference": 0.6, "verdicts": {"base_first": "B", "candidate_first": "A"},
                      "parse_ok": True, "first_try_ok": True,
                      "usage": {"prompt_tokens": 200, "completion_tokens": 2}, "cost_usd": 0.0,
                      "cached": False} for i in range(ITEMS) for c in CRITERIA]
            write_jsonl(eval_dir / SAMPLES / "judge_pairwise.jsonl", pairs)
            metrics["judge"]["pairwise"] = summarize_pairwise(pairs)
    atomic_write_json(run / "eval" / METRICS, metrics)
    freeze_thresholds(cfg)
    _stage(run / "eval", "eval")
    gate_stage.run(cfg, run / "gate")
    _stage(run / "gate", "gate")
    return cfg, run
