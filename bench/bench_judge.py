"""The async judge vs sequential calls, on the same workload, against a fixed-latency server.

A loopback OpenAI-compatible server in its own process answers every chat completion after a
fixed delay (default 50 ms) with a JSON judgement derived from the prompt. The workload is the
judge's real absolute-grading requests (rubric judges/code_change.yaml, json mode, every
criterion of every item). Baseline: the same requests sent one after another with the plain
synchronous `openai` client. Then the harness Judge at several concurrency limits, with the
cache off so every judgement is a call, and a rerun with the cache on (nothing to pay). The
script checks that every run got the same scores, and reports throughput as a ratio of the
baseline's.

    .venv/bin/python bench/bench_judge.py [--items N] [--latency S] [--concurrency 1 4 8 16]

Writes bench/results/bench_judge.json.

With `--reliability MODEL_DIR` it instead measures how reliable a local model is as the judge
(harness/judge/reliability.py), the way the offline default uses it (a loopback `harness
serve` over the model, guided choice): known answers from this repository's last small commits
(message -> diff), spoiled and compared in both orders. Writes bench_judge_reliability.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import uvicorn  # noqa: E402
from _results import write_result  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402

from harness.judge.client import JudgeClient  # noqa: E402
from harness.judge.scoring import Judge, JudgeItem, load_rubric  # noqa: E402

RUBRIC = ROOT / "judges" / "code_change.yaml"


def serve(port: int, latency_s: float) -> None:
    """The fixed-latency endpoint (runs in a child process)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        await asyncio.sleep(latency_s)
        digest = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()
        content = json.dumps({"rationale": "benchmark", "score": 1 + digest[0] % 5})
        return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                "model": body["model"], "usage": {"prompt_tokens": 500, "completion_tokens": 20,
                                                  "total_tokens": 520},
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content}}]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(latency_s: float) -> tuple[multiprocessing.Process, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(port, latency_s),
                                                        daemon=True)
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/v1"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the benchmark server did not start")


def workload(n: int) -> list[JudgeItem]:
    return [JudgeItem(f"item{i}", f"Add a helper number {i} that adds two numbers.",
                      f"def add_{i}(a, b):\n    return a + b\n" * (1 + i % 5),
                      f"+def add_{i}(a, b):\n+    return a + b\n") for i in range(n)]


def make_judge(url: str, concurrency: int, cache_dir: Path | None) -> Judge:
    client = JudgeClient(url, "bench", max_concurrency=concurrency, max_retries=0,
                         cache_dir=cache_dir)
    return Judge(load_rubric(RUBRIC), client, output="json", logprobs=False, max_tokens=200)


def sequential(url: str, items: list[JudgeItem]) -> tuple[list[float], float]:
    """The baseline: the judge's own requests, sent one at a time with the sync client."""
    from openai import OpenAI

    judge = make_judge(url, 1, None)
    schema = judge.rubric.absolute.schema
    fmt = {"type": "json_schema", "json_schema": {"name": "code_change_absolute",
                                                   "schema": schema, "strict": True}}
    client = OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    scores = []
    start = time.perf_counter()
    for item in items:
        for c in judge.rubric.criteria:
            messages = judge.messages("absolute", c, item.instruction, item.reference, item.response)
            r = client.chat.completions.create(model="bench", messages=messages, temperature=0,
                                               max_tokens=200, response_format=fmt)
            scores.append(float(json.loads(r.choices[0].message.content)["score"]))
    return scores, time.perf_counter() - start


def timed(judge: Judge, items: list[JudgeItem]) -> tuple[list[float], float]:
    start = time.perf_counter()
    rows = judge.grade(items)
    return [r["score"] for r in rows], time.perf_counter() - start


def commits(n: int, max_lines: int = 40) -> list[dict]:
    """This repository's last `n` commits whose Python diff has at most `max_lines` lines, as
    held-out change requests (message -> diff)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                              text=True).stdout

    out = []
    for sha in git("rev-list", "--no-merges", "-n", "400", "HEAD").split():
        diff = git("show", "--format=", "--unified=1", sha, "--", "*.py").strip()
        if diff and len(diff.splitlines()) <= max_lines:
            out.append({"id": sha[:12], "instruction": git("show", "-s", "--format=%B", sha).strip(),
                        "response": diff})
        if len(out) == n:
            break
    return out


def reliability(model_dir: str, n: int, cache: Path | None, concurrency: int,
                timeout_s: float) -> None:
    from harness.judge.reliability import measure
    from harness.serve.app import ServerThread, create_app

    records = commits(n)
    answers = [JudgeItem(r["id"], r["instruction"], r["response"], r["response"]) for r in records]
    start = time.perf_counter()
    with ServerThread(create_app(model_dir, served_name="base")) as server:
        client = JudgeClient(server.base_url, "base", max_concurrency=concurrency,
                             timeout_s=timeout_s, cache_dir=cache)
        judge = Judge(load_rubric(RUBRIC), client, output="choice", guided_choice=True)
        summary, _ = measure(judge, records, answers)
    seconds = time.perf_counter() - start
    out = write_result("bench_judge_reliability", {"model": model_dir, "items": len(records),
                                                   "commits": [r["id"] for r in records],
                                                   "seconds": round(seconds, 1), **summary})
    print(f"\n{model_dir} as the judge, {len(records)} commits of this repository, "
          f"{summary['judgements']} judgements in {seconds:.0f} s")
    print(f"{'criterion':<22}{'pairs':>6}{'accuracy':>10}{'pairwise':>10}{'consistent':>12}"
          f"{'first pos':>11}{'self tie':>10}")
    for name, r in summary["criteria"].items():
        cells = [r[k] for k in ("accuracy", "pairwise_accuracy", "position_consistency",
                                "first_position_rate", "self_tie_rate")]
        print(f"{name:<22}{r['pairs']:>6}" + "".join(
            f"{'n/a' if v is None else f'{v:.3f}':>{w}}" for v, w in zip(cells, (10, 10, 12, 11, 10), strict=True)))
    print(f"results → {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05, help="server delay per reply (s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--reliability", metavar="MODEL_DIR",
                        help="measure this local model's reliability as the judge instead")
    parser.add_argument("--cache", type=Path, help="judge cache for --reliability (default: none)")
    parser.add_argument("--timeout", type=float, default=120, help="--reliability: per request (s)")
    args = parser.parse_args()
    if args.reliability:
        return reliability(args.reliability, args.items, args.cache, args.concurrency[0],
                           args.timeout)
    items = workload(args.items)
    proc, url = start_server(args.latency)
    try:
        base_scores, base_s = sequential(url, items)
        runs = [{"mode": "sequential (sync openai client)", "concurrency": 1, "seconds": base_s,
                 "identical_scores": True}]
        for k in args.concurrency:
            scores, seconds = timed(make_judge(url, k, None), items)
            runs.append({"mode": "harness Judge (async)", "concurrency": k, "seconds": seconds,
                         "identical_scores": scores == base_scores})
        with tempfile.TemporaryDirectory() as cache:
            timed(make_judge(url, max(args.concurrency), Path(cache)), items)
            rerun = make_judge(url, max(args.concurrency), Path(cache))
            scores, seconds = timed(rerun, items)
            runs.append({"mode": "harness Judge, cached rerun", "concurrency": max(args.concurrency),
                         "seconds": seconds, "identical_scores": scores == base_scores,
                         "calls": rerun.client.ledger.calls})
    finally:
        proc.kill()
    n = len(base_scores)
    for r in runs:
        r.update(seconds=round(r["seconds"], 3), judgements_per_s=round(n / r["seconds"], 1),
                 ratio_vs_sequential=round(base_s / r["seconds"], 2))
    result = {"judgements": n, "items": args.items, "latency_s": args.latency, "runs": runs}
    out = write_result("bench_judge", result)

    print(f"\n{n} judgements ({args.items} items x {n // args.items} criteria), server latency "
          f"{args.latency * 1000:.0f} ms per reply")
    print(f"{'mode':<32}{'limit':>6}{'seconds':>10}{'judgements/s':>14}{'ratio':>8}{'same scores':>13}")
    for r in runs:
        print(f"{r['mode']:<32}{r['concurrency']:>6}{r['seconds']:>10.2f}"
              f"{r['judgements_per_s']:>14.1f}{r['ratio_vs_sequential']:>7.2f}x"
              f"{r['identical_scores']!s:>13}")
    print(f"results → {out}")
    if not all(r["identical_scores"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
