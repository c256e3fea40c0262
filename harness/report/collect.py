"""Gather the evidence for a run's report from the stages' outputs, defensively: a task that was
disabled, a judge that did not run, a merged adapter without a training log, are reported as
absent instead of failing the report.

Everything a report shows is computed here, once, into one JSON-serialisable dict (written as
`evidence.json`), with the sha256 of every input file it was computed from; the renderers only
format it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

from harness.eval.tasks import TASKS
from harness.io import read_json, read_jsonl, sha256_file, sha256_text
from harness.rundir import (
    DATASET_CARD,
    EXPORT,
    MANIFEST,
    METRICS,
    MINE_STATS,
    MODELS,
    RECORDS,
    THRESHOLDS,
    TRAIN_LOG,
    VERDICT,
    rel,
    samples,
)

MATCH_KEYS = ("exact_match", "first_line_exact_match", "edit_similarity")


class Inputs:
    """Reads a run dir's files, remembering the sha256 of each one read."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.hashes = run_dir, {}

    def path(self, rel: str) -> Path | None:
        p = self.run_dir / rel
        if not p.is_file():
            return None
        self.hashes[rel] = sha256_file(p)
        return p

    def json(self, rel: str) -> dict | None:
        p = self.path(rel)
        return read_json(p) if p else None

    def jsonl(self, rel: str) -> list[dict] | None:
        p = self.path(rel)
        return list(read_jsonl(p)) if p else None


def wilson(passed: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval of a pass rate (sound for small n and rates near 0 or 1)."""
    if not n:
        return None
    ci = binomtest(int(passed), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def _tasks(metrics: dict, report: str) -> list[str]:
    """The registered tasks in `metrics` that belong to report section `report`."""
    return [t for t in metrics if t in TASKS and TASKS[t].report == report]


def _exec_tasks(metrics: dict) -> list[str]:
    return [t for t in _tasks(metrics, "pass_rate") if "pass@1" in (metrics[t].get("base") or {})]


def _first_samples(rows: list[dict]) -> dict[str, dict]:
    return {r["item_id"]: r for r in rows if r.get("sample", 0) == 0}


def flips(base: list[dict], cand: list[dict], prompts: dict[str, str]) -> list[dict]:
    """Problems whose outcome changed (first sample of each), regressions first, with the
    prompt when it provably is the one asked (its sha256 matches the rows')."""
    b, c = _first_samples(base), _first_samples(cand)
    keep = ("passed", "status", "error", "output")
    out = []
    for i in sorted(b.keys() & c.keys()):
        if bool(b[i]["passed"]) == bool(c[i]["passed"]):
            continue
        prompt = prompts.get(i)
        out.append({"item_id": i, "change": "fixed" if c[i]["passed"] else "broken",
                    "prompt": prompt if prompt and sha256_text(prompt) == b[i].get("prompt_hash")
                    else None, "expected": b[i].get("expected"),
                    "base": {k: b[i].get(k) for k in keep},
                    "candidate": {k: c[i].get(k) for k in keep}})
    return sorted(out, key=lambda f: f["change"] != "broken")


def pass_rates(metrics: dict, task: str, confidence: float) -> dict:
    """pass@1 per model with its Wilson interval over the samples."""
    out = {}
    for label in MODELS:
        m = metrics[task][label]
        drawn = m.get("samples", m["n"])
        out[label] = {"pass@1": m["pass@1"], "passed": m["passed"], "n": m["n"],
                      "samples": drawn, "ci": wilson(m["passed"], drawn, confidence)}
    return out


def match_rates(metrics: dict, task: str, confidence: float) -> dict:
    """Text match per model, with the Wilson interval of exact match over the holes."""
    out = {}
    for label in MODELS:
        m = metrics[task][label]
        out[label] = {**{k: m[k] for k in MATCH_KEYS}, "n": m["n"],
                      "exact_match_ci": wilson(round(m["exact_match"] * m["n"]), m["n"], confidence)}
    return out


def judge(metrics: dict, scores: dict[str, list[dict] | None]) -> dict | None:
    """Per criterion, base vs candidate: mean, logprob-weighted mean, parse failures and the
    distribution of scores; pairwise win/tie/loss when the judge compared them; the judge's
    measured reliability and the correlation of its scores with response length."""
    j = metrics.get("judge")
    if not j:
        return None
    criteria: dict[str, dict] = {}
    for label in MODELS:
        rows = scores.get(label) or []
        for name, summary in (j.get(label) or {}).get("criteria", {}).items():
            dist = Counter(str(int(r["score"])) for r in rows
                           if r["criterion"] == name and r.get("score") is not None)
            criteria.setdefault(name, {})[label] = {
                **{k: summary.get(k) for k in ("n", "mean", "weighted_mean", "parse_failure_rate")},
                "distribution": dict(sorted(dist.items()))}
    rel = j.get("reliability") or {}
    return {"criteria": criteria, "pairwise": (j.get("pairwise") or {}).get("criteria"),
            "usage": j.get("usage"), "rubric": j.get("rubric"), "settings": j.get("settings"),
            "reliability": rel.get("criteria"),
            "reliability_totals": {k: rel.get(k) for k in ("judgements", "cached", "cost_usd",
                                                           "parse_failure_rate")} if rel else None,
            "length_bias": j.get("length_bias")}


def _lora(manifest: dict) -> dict | None:
    train = (manifest.get("config") or {}).get("train") or {}
    keys = ("lr", "batch_size", "grad_accum", "max_steps", "epochs", "max_length", "packing")
    return {**(train.get("lora") or {}), **{k: train.get(k) for k in keys if k in train}} or None


def export_summary(manifest: dict | None) -> dict | None:
    """Per exported file (`harness export`): its verification against the merged model and
    what quantization cost on the run's held-out completion mini-eval."""
    if not manifest:
        return None
    mini = manifest.get("mini_eval") or {}
    files = {}
    for t, g in (manifest.get("gguf") or {}).items():
        v = g.get("verification") or {}
        vs = v.get("vs_merged") or {}
        files[t] = {"file": g.get("file"), "bytes": g.get("bytes"), "status": v.get("status"),
                    "tokenization_identical": (v.get("tokenization") or {}).get("identical"),
                    "top1_agreement": vs.get("top1_agreement"),
                    "max_abs_logit_error": vs.get("max_abs_logit_error"),
                    "greedy_identical": vs.get("greedy_identical"),
                    "mini_eval": mini.get(t)}
    return {"name": manifest.get("name"), "files": files, "merged_mini_eval": mini.get("merged"),
            "mini_eval_items": mini.get("items"), "mini_eval_mode": mini.get("mode"),
            "ollama": bool(manifest.get("ollama")), "vllm_command": (manifest.get("vllm") or {}).get("command")}


def collect(run_dir: Path, run_name: str, benchmarks_sha256: dict) -> dict:
    """The evidence for the run in `run_dir` (its gate must have run)."""
    inp = Inputs(run_dir)
    verdict = inp.json(rel("gate", VERDICT))
    metrics = inp.json(rel("eval", METRICS)) or {}
    manifest = inp.json(rel("train", MANIFEST)) or {}
    confidence = (verdict.get("bootstrap") or {}).get("confidence", 0.95)
    exec_tasks = _exec_tasks(metrics)
    rows = {t: {label: inp.jsonl(rel("eval", samples(t, label))) for label in MODELS}
            for t in exec_tasks}
    log = inp.jsonl(rel("train", TRAIN_LOG)) or []
    inp.path(rel("mine", RECORDS))
    inp.path(THRESHOLDS)
    evidence = {
        "run": run_name,
        "run_dir": str(run_dir.resolve()),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict,
        "metrics": metrics,
        "pass_at_1": {t: pass_rates(metrics, t, confidence) for t in exec_tasks},
        "flips": {t: flips(s["base"], s["candidate"], TASKS[t].prompts())
                  for t, s in rows.items() if s["base"] is not None and s["candidate"] is not None},
        "fim": next((match_rates(metrics, t, confidence) for t in _tasks(metrics, "match")),
                    None),
        "judge": judge(metrics, {label: inp.jsonl(rel("eval", samples(TASKS["judge"].scored,
                                                                      label)))
                                 for label in MODELS}),
        "training": {k: v for k, v in manifest.items() if k not in ("config", "chat_template")},
        "lora": _lora(manifest),
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in log if "loss" in h],
        "eval_loss_curve": [{"step": h["step"], "loss": h["eval_loss"]} for h in log
                            if "eval_loss" in h],
        "export": export_summary(inp.json(rel(EXPORT, MANIFEST))),
        "mine_stats": inp.json(rel("mine", MINE_STATS)),
        "dataset_card": {k: v for k, v in (inp.json(rel("format", DATASET_CARD)) or {}).items()
                         if k != "chat_template"},
    }
    evidence["hashes"] = {
        "records_sha256": inp.hashes.get(rel("mine", RECORDS)),
        "dataset_hash": manifest.get("dataset_hash"),
        "tokenizer_hash": manifest.get("tokenizer_hash"),
        "template_hash": manifest.get("template_hash"),
        "adapter_sha256": manifest.get("adapter_sha256"),
        "thresholds_sha256": verdict.get("thresholds_sha256"),
        "benchmarks_sha256": benchmarks_sha256,
        "eval_prompts_sha256": (metrics.get("settings") or {}).get("prompts_sha256"),
    }
    evidence["inputs"] = dict(sorted(inp.hashes.items()))
    return evidence
