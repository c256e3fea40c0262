"""Judge orchestration for the eval stage: where the judge lives, what it judges, and the
summaries that go into metrics.json.

The judge is any OpenAI-compatible endpoint (`judge.base_url`); with none configured, a
loopback server over the base model is started for the duration (the offline default): then
the judge is the model under test, and metrics.json says so for the report. Both models'
answers are graded absolutely and, with `judge.pairwise`, compared head to head; the judge's
reliability is measured on known answers from the same held-out items (judge_reliability.py),
and the correlation of its scores with response length is reported. The sample files are
written only once every judgement is in, so a run stopped by the budget or a failing endpoint
leaves nothing half-written; the replies it did get are in the cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.format.fim import plain
from harness.io import write_jsonl
from harness.judge.client import JudgeClient, Ledger
from harness.judge.reliability import measure
from harness.judge.scoring import Judge, JudgeItem, load_rubric
from harness.paths import project_path
from harness.rundir import JUDGE_PAIRWISE, JUDGE_RELIABILITY, JUDGE_SCORES, MODELS, SAMPLES, samples

log = logging.getLogger(__name__)


@contextlib.contextmanager
def judge_endpoint(jcfg: DictConfig, model_cfg: DictConfig, model_ref: str) -> Iterator[str]:
    """The judge's base URL: the configured one (`judge.base_url`), or a loopback server over
    the base model (`model_ref`, with the model settings' FIM tokens)."""
    if jcfg.base_url:
        yield str(jcfg.base_url)
        return
    from harness.serve.app import ServerThread, create_app

    app = create_app(model_ref, served_name=jcfg.model,
                     fim=plain(model_cfg.get("fim")))
    with ServerThread(app) as server:
        log.info("local judge server (base model) at %s", server.base_url)
        yield server.base_url


def make_judge(j: DictConfig, base_url: str, cache_dir: Path) -> Judge:
    """A Judge configured from the `judge` config group (see conf/judge/local.yaml)."""
    ledger = Ledger(j.price_per_1k_prompt_tokens, j.price_per_1k_completion_tokens, j.budget_usd)
    client = JudgeClient(base_url, j.model, api_key_env=j.api_key_env,
                         max_concurrency=j.max_concurrency, timeout_s=j.timeout_s,
                         max_retries=j.max_retries, cache_dir=cache_dir, ledger=ledger)
    return Judge(load_rubric(project_path(j.rubric)), client, output=j.output,
                 guided_choice=j.guided_choice, response_format=j.response_format,
                 logprobs=j.logprobs, top_logprobs=j.top_logprobs, max_tokens=j.max_tokens,
                 max_reasks=j.max_reasks, max_response_chars=j.max_response_chars)


RELIABILITY = {"enabled": True, "items": None, "pairwise": True, "seed": 0}


def reliability_settings(j: DictConfig) -> dict:
    """`judge.reliability` (see conf/judge/local.yaml; types and ranges are checked at start by
    harness/config_check.py), with defaults where it is absent."""
    r = {**RELIABILITY, **(OmegaConf.to_container(j.reliability, resolve=True)
                           if OmegaConf.select(j, "reliability") is not None else {})}
    return r


def run_judge(jcfg: DictConfig, model_cfg: DictConfig, cache_dir: str | Path, out: Path,
              model_ref: str, items: list[dict], answers: dict[str, list[dict]]) -> dict:
    """Judge both models' answers to the held-out change requests, and the judge itself, with
    the judge settings (replies cached under `cache_dir`/judge); the summary for metrics."""
    rel = reliability_settings(jcfg)
    with judge_endpoint(jcfg, model_cfg, model_ref) as base_url:
        judge = make_judge(jcfg, base_url, Path(cache_dir) / "judge")
        judged = {label: [JudgeItem(id=r["id"], instruction=r["instruction"],
                                    response=a["output"], reference=r["response"])
                          for r, a in zip(items, answers[label], strict=True)]
                  for label in MODELS}
        scores = {label: [{"task": "judge", "model": label, **row}
                          for row in judge.grade(judged[label], label=label)] for label in MODELS}
        pairs = ([{"task": "judge_pairwise", **row}
                  for row in judge.compare(judged["base"], judged["candidate"])]
                 if jcfg.pairwise else None)
        reliability = None
        if rel["enabled"]:
            n = rel["items"] or len(items)
            reliability, checked = measure(judge, items[:n], judged["candidate"][:n],
                                           rel["seed"], rel["pairwise"])
    for label, rows in scores.items():
        write_jsonl(out / samples(JUDGE_SCORES, label), rows)
    summary = {label: summarize(rows) for label, rows in scores.items()}
    if pairs is not None:
        write_jsonl(out / SAMPLES / JUDGE_PAIRWISE, pairs)
        summary["pairwise"] = summarize_pairwise(pairs)
    if reliability is not None:
        write_jsonl(out / SAMPLES / JUDGE_RELIABILITY, checked)
        summary["reliability"] = reliability
        for name, r in reliability["criteria"].items():
            log.info("judge reliability [%s]: %d known-answer pairs, accuracy %s, pairwise "
                     "accuracy %s, position consistency %s, first-position rate %s, self-tie "
                     "rate %s", name, r["pairs"], *(_fmt(r[k]) for k in (
                         "accuracy", "pairwise_accuracy", "position_consistency",
                         "first_position_rate", "self_tie_rate")))
    summary["length_bias"] = length_bias(scores, judged)
    usage = judge.client.ledger.summary()
    log.info("judge: %d new calls (%d more answered from the cache), %d prompt + %d "
             "completion tokens, $%.4f spent; samples in %s", usage["calls"], usage["cached_calls"],
             usage["prompt_tokens"], usage["completion_tokens"], usage["spent_usd"],
             out / SAMPLES)
    local = not jcfg.base_url
    return {**summary, "usage": usage,
            "rubric": {"name": judge.rubric.name, "version": judge.rubric.version},
            "settings": {"model": judge.client.model, "output": judge.output,
                         "rejected_features": sorted(judge.client.dropped),
                         "endpoint": "local: the base model, served on loopback" if local
                         else str(jcfg.base_url),
                         "judge_is_model_under_test": local}}


def length_bias(scores: dict[str, list[dict]], judged: dict[str, list[JudgeItem]]) -> dict:
    """Per criterion, Spearman's rho of score vs response length over both models' answers: a
    judge that rewards length shows a strong positive rho (None when undefined: < 3 scores, or
    every score or length the same)."""
    from scipy.stats import spearmanr

    length = {(label, i.id): len(i.response) for label, items in judged.items() for i in items}
    out = {}
    for name, rows in _by_criterion([r for part in scores.values() for r in part]).items():
        pairs = [(length[r["model"], r["item_id"]], v) for r in rows
                 if (v := r["weighted_score"] if r["weighted_score"] is not None else r["score"])
                 is not None]
        rho = None
        if len(pairs) >= 3 and len({p[0] for p in pairs}) > 1 and len({p[1] for p in pairs}) > 1:
            rho = float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)
        out[name] = {"spearman": rho, "n": len(pairs)}
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rate(rows: list[dict], predicate) -> float | None:
    return _mean([float(predicate(r)) for r in rows])


def _by_criterion(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["criterion"], []).append(row)
    return groups


def _totals(rows: list[dict]) -> dict:
    return {"parse_failure_rate": _rate(rows, lambda r: not r["parse_ok"]),
            "first_try_parse_failure_rate": _rate(rows, lambda r: not r["first_try_ok"]),
            "total_tokens": sum(sum(r["usage"].values()) for r in rows),
            "cost_usd": sum(r["cost_usd"] for r in rows),
            "n_cached": sum(r["cached"] for r in rows)}


def summarize(scores: list[dict]) -> dict:
    """Absolute grading, per criterion: n, mean score (parsed rows), mean logprob-weighted
    score, parse failure rates after and before re-asks; plus totals over all rows."""
    criteria = {
        name: {"n": len(rows),
               "mean": _mean([r["score"] for r in rows if r["parse_ok"]]),
               "weighted_mean": _mean([r["weighted_score"] for r in rows
                                       if r["weighted_score"] is not None]),
               "parse_failure_rate": _rate(rows, lambda r: not r["parse_ok"]),
               "first_try_parse_failure_rate": _rate(rows, lambda r: not r["first_try_ok"])}
        for name, rows in _by_criterion(scores).items()}
    return {"criteria": criteria, **_totals(scores)}


def summarize_pairwise(pairs: list[dict]) -> dict:
    """Pairwise, per criterion, from the candidate's side: wins, ties (inconsistent orders
    included), losses and their rates over the readable comparisons; the logprob preference
    (0.5 = none); and how often the judge picked whichever answer was shown first (0.5 = no
    position bias)."""
    criteria = {}
    for name, rows in _by_criterion(pairs).items():
        read = [r for r in rows if r["outcome"] is not None]
        counts = {k: sum(r["outcome"] == k for r in read) for k in ("win", "tie", "loss")}
        picks = [v for r in rows for v in r["verdicts"].values() if v in ("A", "B")]
        criteria[name] = {
            "n": len(rows), "compared": len(read), "wins": counts["win"], "ties": counts["tie"],
            "losses": counts["loss"], "inconsistent": sum(r["inconsistent"] for r in rows),
            **{f"{k}_rate": counts[k] / len(read) if read else None for k in counts},
            "preference": _mean([r["preference"] for r in rows if r["preference"] is not None]),
            "first_position_rate": _rate(picks, lambda v: v == "A") if picks else None}
    return {"criteria": criteria, **_totals(pairs)}
