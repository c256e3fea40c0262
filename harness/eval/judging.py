"""Judge orchestration for the eval stage: where the judge lives and which answers it scores.

The judge is any OpenAI-compatible endpoint (`judge.base_url`); with none configured, a
loopback server over the base model is started for the duration (the offline default).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.eval.judge import Judge, JudgeItem, load_rubric, summarize
from harness.io import write_jsonl
from harness.paths import project_path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def judge_endpoint(cfg: DictConfig, model_ref: str) -> Iterator[str]:
    """The judge's base URL: the configured one, or a loopback server over the base model."""
    if cfg.judge.base_url:
        yield str(cfg.judge.base_url)
        return
    from harness.serve.app import ServerThread, create_app

    app = create_app(model_ref, served_name=cfg.judge.model,
                     fim=OmegaConf.to_container(cfg.model.fim, resolve=True))
    with ServerThread(app) as server:
        log.info("local judge server (base model) at %s", server.base_url)
        yield server.base_url


def run_judge(cfg: DictConfig, out: Path, model_ref: str, items: list[dict],
              answers: dict[str, list[dict]]) -> dict:
    """Score both models' answers to the held-out change requests; per-model summaries."""
    j = cfg.judge
    with judge_endpoint(cfg, model_ref) as base_url:
        judge = Judge(load_rubric(project_path(j.rubric)), base_url=base_url, model=j.model,
                      api_key_env=j.api_key_env, guided_choice=j.guided_choice,
                      max_concurrency=j.max_concurrency, timeout_s=j.timeout_s,
                      max_retries=j.max_retries, cache_dir=Path(cfg.cache_dir) / "judge")
        summary = {}
        for label in ("base", "candidate"):
            judge_items = [JudgeItem(id=r["id"], instruction=r["instruction"], response=a["output"],
                                     reference=r["response"])
                           for r, a in zip(items, answers[label], strict=True)]
            rows = [{"task": "judge", "model": label, **row}
                    for row in judge.score(judge_items, label=label)]
            write_jsonl(out / "samples" / f"judge_scores.{label}.jsonl", rows)
            summary[label] = summarize(rows)
    return summary
