"""bigcode-evaluation-harness interop: its generations files, its ``evaluation_results.json``,
and running it as the scorer when it is installed (it is not on PyPI: clone
github.com/bigcode-project/bigcode-evaluation-harness and ``pip install -e`` it).

A generations file is a JSON list, per problem in dataset order, of the n post-processed full
programs (prompt + completion cut at the stop words), exactly what bigcode's
``--save_generations`` writes and ``--load_generations_path`` reads. ``evaluation_results.json``
maps each task to its metrics (``{"humaneval": {"pass@1": 0.3}, "config": {...}}``).

Difference to know: bigcode's MBPP runs only the asserts, not ``test_setup_code``, so MBPP 367
and 927 cannot pass under its scorer; ours runs the setup code (see benchmarks.py).
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from harness.benchmarks import Problem, load_humaneval, load_mbpp, postprocess
from harness.errors import HarnessError
from harness.eval.records import pass_metrics
from harness.eval.runner import score_generations
from harness.io import atomic_write_json, read_json, sha256_text, write_jsonl
from harness.sandbox.execute import Sandbox

log = logging.getLogger(__name__)
TASKS = {"humaneval": "humaneval", "mbpp": "mbpp"}  # ours → bigcode's task names


def to_generations(problems: list[Problem], rows: list[dict]) -> list[list[str]]:
    """Our rows → bigcode's generations (problem order, samples in order)."""
    by_item: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        by_item.setdefault(r["item_id"], []).append((r["sample"], r["output"]))
    return [[postprocess(p, out) for _, out in sorted(by_item[p.task_id])] for p in problems]


def from_generations(problems: list[Problem], generations: list[list[str]]) -> list[list[str]]:
    """bigcode's generations → our raw continuations (what follows each prompt)."""
    if len(generations) < len(problems):
        raise HarnessError(f"the generations file has {len(generations)} problems; "
                           f"{len(problems)} are being evaluated.")
    out = []
    for p, programs in zip(problems, generations, strict=False):
        bad = [g for g in programs if not g.startswith(p.prompt)]
        if bad:
            raise HarnessError(
                f"{p.task_id}: a generation does not start with the bigcode prompt; this file was "
                "not made with the bigcode protocol (prompt.strip() for HumanEval, the docstring "
                "prompt for MBPP), so its scores would not be comparable.")
        out.append([g[len(p.prompt):] for g in programs])
    return out


def write_generations(path: str | Path, generations: list[list[str]]) -> Path:
    return atomic_write_json(path, generations)


def read_generations(path: str | Path) -> list[list[str]]:
    data = read_json(path)
    if not (isinstance(data, list)
            and all(isinstance(g, list) and all(isinstance(s, str) for s in g) for g in data)):
        raise HarnessError(f"{path} is not a bigcode generations file (a JSON list of lists of "
                           "program strings, one list per problem).")
    return data


def write_evaluation_results(path: str | Path, results: dict[str, dict], config: dict) -> Path:
    return atomic_write_json(path, {**results, "config": config})


def read_evaluation_results(path: str | Path) -> dict[str, dict[str, float]]:
    """Task → metrics from bigcode's ``evaluation_results.json`` (its ``config`` left out)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise HarnessError(f"{path} is not a bigcode evaluation_results.json (a JSON object).")
    return {k: v for k, v in data.items() if k != "config" and isinstance(v, dict)}


def find_main(configured: str | None) -> Path | None:
    """bigcode's ``main.py``: the configured path, or next to an editable ``bigcode_eval``."""
    if configured:
        return Path(configured).expanduser().resolve()
    spec = importlib.util.find_spec("bigcode_eval")
    if spec is None or not spec.origin:
        return None
    main = Path(spec.origin).resolve().parents[1] / "main.py"
    return main if main.is_file() else None


def run_bigcode(task: str, generations_path: Path, out_path: Path, n_samples: int,
                main_py: Path, python: str = sys.executable, extra_args: list[str] = (),
                timeout_s: float = 3600) -> dict[str, float]:
    """Score a generations file with bigcode-evaluation-harness (``--load_generations_path``);
    its metrics for ``task``."""
    if not main_py.is_file():
        raise HarnessError(f"bigcode-evaluation-harness main.py not found at {main_py}. Fix: "
                           "clone github.com/bigcode-project/bigcode-evaluation-harness, "
                           "`pip install -e` it, and set eval.bigcode.main to its main.py.")
    limit = len(read_generations(generations_path))
    cmd = [python, str(main_py), "--tasks", TASKS[task], "--allow_code_execution",
           "--load_generations_path", str(generations_path), "--n_samples", str(n_samples),
           "--limit", str(limit), "--metric_output_path", str(out_path), *extra_args]
    log.info("bigcode-evaluation-harness: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, cwd=main_py.parent, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"bigcode-evaluation-harness did not finish in {timeout_s:g}s") from e
    if proc.returncode != 0 or not out_path.is_file():
        raise HarnessError(f"bigcode-evaluation-harness failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-1500:]}")
    results = read_evaluation_results(out_path)
    if TASKS[task] not in results:
        raise HarnessError(f"{out_path} has no results for {TASKS[task]!r}: {sorted(results)}")
    return results[TASKS[task]]


def score_file(cfg: DictConfig) -> dict[str, float]:
    """``harness score-generations eval.bigcode.generations=<file> eval.bigcode.task=<task>``:
    score a generations file made by bigcode-evaluation-harness (or anyone following its
    protocol) in our sandbox. Writes ``evaluation_results.json`` (bigcode's format) and the
    per-sample rows (``samples.jsonl``, our schema) to the run dir; returns the metrics."""
    b = cfg.eval.bigcode
    if not b.generations or b.task not in TASKS:
        raise HarnessError("score-generations needs eval.bigcode.generations=<file> and "
                           f"eval.bigcode.task=<one of {sorted(TASKS)}>.")
    generations = read_generations(b.generations)
    problems = (load_humaneval() if b.task == "humaneval" else load_mbpp())[:len(generations)]
    rows = score_generations(problems, from_generations(problems, generations),
                             Sandbox.from_config(cfg.eval.sandbox), model=Path(b.generations).stem,
                             engine="bigcode-file",
                             prompt_hashes=[sha256_text(p.prompt) for p in problems])
    n = min(len(g) for g in generations)
    metrics = {k: v for k, v in pass_metrics(rows, [1, 10, 100]).items() if k.startswith("pass@")}
    out = Path(cfg.run_dir)
    write_jsonl(out / "samples.jsonl", rows)
    write_evaluation_results(out / "evaluation_results.json", {TASKS[b.task]: metrics},
                             {"load_generations_path": str(b.generations), "n_samples": n,
                              "scorer": "harness sandbox"})
    log.info("%s: %s → %s", b.task, metrics, out / "evaluation_results.json")
    return metrics
