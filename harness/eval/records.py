"""The one schema of per-sample results, whichever path produced them (our batched runner with
any engine, lm-eval, a generations file), and the metrics computed from such rows.

Every row has every field; those a task does not use are None. The gate pairs rows of base and
candidate by ``item_id``, reading the field each task names for a gate metric
(harness/eval/tasks: ``passed`` for pass@1 of execution tasks, ``exact_match`` ... for FIM);
with ``n_samples`` > 1 an item has one row per ``sample``.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from harness.eval.metrics import pass_at_k

FIELDS = (
    "task", "item_id", "sample", "model", "engine", "prompt_hash", "output",
    # how the model was asked: completion | chat (humaneval, mbpp); sentinels | left_to_right (fim)
    "mode",
    # execution tasks (humaneval, mbpp, humaneval_infill_*)
    "passed", "status", "error", "exec_seconds",
    # text-match tasks (fim, and the infill tasks as a side measure)
    "expected", "exact_match", "first_line_exact_match", "edit_similarity",
    "gen_seconds",
)


def row(task: str, item_id: str, model: str, prompt_hash: str, output: str, *,
        sample: int = 0, engine: str | None = None, **fields) -> dict:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not in the sample schema: {sorted(unknown)}")
    return {**dict.fromkeys(FIELDS), "task": task, "item_id": item_id, "sample": sample,
            "model": model, "engine": engine, "prompt_hash": prompt_hash, "output": output,
            **fields}


def exec_fields(result) -> dict:
    """The execution fields of a row from a sandbox ``ExecResult``."""
    return {"passed": result.passed, "status": result.status, "error": result.error,
            "exec_seconds": round(result.duration_s, 4)}


def pass_metrics(rows: list[dict], ks: list[int]) -> dict:
    """Unbiased pass@k (mean over items) for every k no larger than each item's sample count;
    pass@1 always. ``n`` counts items, ``samples`` and ``passed`` count rows."""
    by_item: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_item[r["item_id"]].append(bool(r["passed"]))
    out: dict = {"n": len(by_item), "samples": len(rows), "passed": sum(r["passed"] for r in rows),
                 "status": dict(Counter(r["status"] for r in rows))}
    for k in sorted({1, *ks}):
        if by_item and all(len(v) >= k for v in by_item.values()):
            out[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k)
                                   for v in by_item.values()) / len(by_item)
    return out


def match_metrics(rows: list[dict]) -> dict:
    keys = ("exact_match", "first_line_exact_match", "edit_similarity")
    return {**{k: sum(r[k] for r in rows) / len(rows) for k in keys}, "n": len(rows)}
