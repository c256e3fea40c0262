"""The model server (harness/serve/app.py) under load, over loopback HTTP. Three benchmarks:

`burst` (the default): a bounded burst of mixed traffic, `--requests` (200) from
`--concurrency` (16) clients: small completions (8 new tokens, half fill-in-the-middle), a few
long ones (`--long-tokens`), malformed requests (`guided_choice: []`, `seed: 2**64`, broken
JSON, ...) and oversized ones (a 1 MB prompt, over the body limit; a 400 KB prompt, under it but
far over the prompt-token limit). Reported per server: unexpected 5xx and connection errors,
the server process's RSS before and after (and its peak), and the latency of the small
requests (p50, p95, their ratio). Run against this tree and, with `--old REV`, against the
harness package of git revision REV (extracted to a temp dir), side by side, as ratios.

`adapters`: completions per second with the base model alone (the baseline), one LoRA adapter,
and several adapters selected per request, plus what reloading per switch would cost.

`choice`: the local judge's calls: `guided_choice` requests with judge-sized prompts (this
repository's source, `--prompt-tokens` long) and the score (1-5) and pairwise (A/B/tie) choices,
on the offline REAL model (SmolLM2-135M), against this tree and `--old REV`: seconds per call,
the ratio, and whether both picked the same choices.

The server runs in its own process (as `harness serve` does), over the offline tiny model
(random weights; its text is noise, its costs are real), except for `choice`.

    .venv/bin/python bench/bench_serve.py burst [--requests 200] [--concurrency 16]
                                                [--long-tokens 256] [--rounds 1] [--old REV]
    .venv/bin/python bench/bench_serve.py adapters [--requests 64] [--concurrency 4]
    .venv/bin/python bench/bench_serve.py choice --old REV [--calls 10] [--prompt-tokens 1500]

Writes bench/results/bench_serve_burst.json, bench_serve.json or bench_serve_choice.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _results import write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PREFIXES = [
    "def mean(values):\n    ",
    "import os\n\n\ndef list_python_files(root):\n    ",
    "class Stack:\n    def __init__(self):\n        ",
    "def parse_line(line: str) -> dict:\n    key, _, value = ",
]
SUFFIXES = ["\n    return total / len(values)\n", "\n    return found\n", "\n", "\n    return out\n"]
CHILD = "--serve-child"


# --- the server process -------------------------------------------------------------------

def child(port: int, base: str, adapters: dict[str, str]) -> None:
    """Entry point of the server process; PYTHONPATH picks which harness it imports."""
    import inspect

    import uvicorn

    from harness.serve.app import create_app

    kwargs = {}
    if "limits" in inspect.signature(create_app).parameters:  # absent from older revisions
        from harness.serve.app import Limits
        kwargs["limits"] = Limits()
    uvicorn.run(create_app(base, adapters=adapters, **kwargs), host="127.0.0.1", port=port,
                log_level="critical", access_log=False)


def start(base: str, adapters: dict[str, str], package_root: Path = ROOT
          ) -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    proc = subprocess.Popen([sys.executable, __file__, CHILD, str(port), base, json.dumps(adapters)],
                            env=env, cwd=str(package_root))
    url = f"http://127.0.0.1:{port}/v1"
    import httpx

    while time.perf_counter() - t0 < 300 and proc.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {"p50_ms": None, "p95_ms": None}
    q = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return {"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1)}


# --- burst ----------------------------------------------------------------------------------

def burst_plan(n: int, long_tokens: int, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """(kind, path, body) for `n` requests: 75% small, 5% long, 10% malformed, 10% oversized,
    shuffled with a fixed seed so every server gets the same sequence."""
    chat = [{"role": "user", "content": "Write a function that adds two numbers."}]
    malformed = [{"model": "base", "messages": chat, "guided_choice": []},
                 {"model": "base", "messages": chat, "max_tokens": 2, "seed": 2**64},
                 {"model": "base", "messages": "not a list"},
                 {"model": "base", "prompt": "x", "max_tokens": 0},
                 {"model": "base", "prompt": "x", "temperature": "hot"}]
    plan = []
    for i in range(n):
        slot = i % 20
        if slot < 15:
            body = {"model": "base", "prompt": PREFIXES[i % 4], "max_tokens": 8, "temperature": 0}
            if i % 2:
                body["suffix"] = SUFFIXES[i % 4]
            plan.append(("small", "/completions", json.dumps(body).encode()))
        elif slot == 15:
            body = {"model": "base", "prompt": PREFIXES[i % 4], "max_tokens": long_tokens,
                    "temperature": 0}
            plan.append(("long", "/completions", json.dumps(body).encode()))
        elif slot < 18:
            body = malformed[i % len(malformed)]
            path = "/chat/completions" if "messages" in body else "/completions"
            plan.append(("malformed", path, json.dumps(body).encode()))
        else:
            size = 1_000_000 if slot == 18 else 400_000
            body = {"model": "base", "prompt": "x = 1\n" * (size // 6), "max_tokens": 1}
            plan.append(("oversized", "/completions", json.dumps(body).encode()))
    plan.append(("malformed", "/completions", b"{not json"))
    random.Random(seed).shuffle(plan)
    return plan[:n]


def rss_sampler(pid: int, stop_event: threading.Event, peak: list[int]) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop_event.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop_event.wait(0.2)


def run_burst(url: str, pid: int, plan: list[tuple[str, str, bytes]], concurrency: int,
              rounds: int, deadline_s: float, timeout_s: float) -> dict:
    import httpx
    import psutil

    client = httpx.Client(base_url=url, timeout=timeout_s,
                          limits=httpx.Limits(max_connections=concurrency),
                          headers={"content-type": "application/json"})
    small = json.dumps({"model": "base", "prompt": PREFIXES[0], "max_tokens": 8,
                        "temperature": 0}).encode()
    with ThreadPoolExecutor(concurrency) as pool:  # warm up every worker, then take the RSS
        for r in pool.map(lambda _: client.post("/completions", content=small),
                          range(2 * concurrency)):
            r.raise_for_status()
    rss_before = psutil.Process(pid).memory_info().rss
    peak, stop_event = [rss_before], threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(pid, stop_event, peak), daemon=True)
    sampler.start()
    t_end = time.perf_counter() + deadline_s

    def one(job: tuple[str, str, bytes]) -> tuple[str, str, float]:
        kind, path, body = job
        if time.perf_counter() > t_end:
            return kind, "not sent (deadline)", 0.0
        t0 = time.perf_counter()
        try:
            status = str(client.post(path, content=body).status_code)
        except httpx.TimeoutException:
            status = "timeout"
        except httpx.TransportError as e:  # a reset connection
            status = f"connection error ({type(e).__name__})"
        return kind, status, 1000 * (time.perf_counter() - t0)

    t0 = time.perf_counter()
    results, rss_rounds = [], []
    for _ in range(rounds):  # the same burst again: memory that is not given back shows here
        with ThreadPoolExecutor(concurrency) as pool:
            results += pool.map(one, plan)
        rss_rounds.append(round(psutil.Process(pid).memory_info().rss / 2**20))
    wall = time.perf_counter() - t0
    stop_event.set()
    sampler.join()
    rss_after = psutil.Process(pid).memory_info().rss
    client.close()

    statuses: dict[str, dict[str, int]] = {}
    for kind, status, _ in results:
        statuses.setdefault(kind, {}).setdefault(status, 0)
        statuses[kind][status] += 1
    unexpected_5xx = sum(1 for _, s, _ in results if s.startswith("5"))
    broken = sum(1 for _, s, _ in results if not s[0].isdigit() and not s.startswith("not sent"))
    small_ok = [ms for kind, s, ms in results if kind == "small" and s == "200"]
    lat = percentiles(small_ok)
    return {"seconds": round(wall, 1), "statuses": statuses, "unexpected_5xx": unexpected_5xx,
            "connection_errors_or_timeouts": broken,
            "rss_before_mb": round(rss_before / 2**20), "rss_after_mb": round(rss_after / 2**20),
            "rss_after_each_round_mb": rss_rounds,
            "rss_peak_mb": round(peak[0] / 2**20),
            "rss_after_vs_before": round(rss_after / rss_before, 2),
            "small_requests_ok": len(small_ok), **lat,
            "small_p95_vs_p50": (round(lat["p95_ms"] / lat["p50_ms"], 2)
                                 if lat["p50_ms"] else None)}


def old_tree(rev: str, into: Path) -> Path:
    """The `harness` package as of git revision `rev`, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "harness"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def burst(args: argparse.Namespace, base: str) -> None:
    plan = burst_plan(args.requests, args.long_tokens)
    alone = [job for job in plan if job[0] == "small"]
    servers = [("this tree, small only", ROOT, alone), ("this tree", ROOT, plan)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.old:
            servers.append((f"old ({args.old})", old_tree(args.old, Path(tmp)), plan))
        runs = []
        for label, root, jobs in servers:
            proc, url, _ = start(base, {}, root)
            try:
                runs.append({"server": label, **run_burst(url, proc.pid, jobs, args.concurrency,
                                                          args.rounds, args.deadline_s,
                                                          args.timeout_s)})
            finally:
                stop(proc)

    def ratio(a: dict, b: dict, label: str) -> dict:
        return {"server": label, **{k: round(a[k] / b[k], 2) if a[k] and b[k] else None
                                    for k in ("seconds", "rss_after_mb", "p50_ms", "p95_ms",
                                              "small_p95_vs_p50")}}

    runs.append(ratio(runs[1], runs[0], "mixed / small only"))
    if args.old:
        runs.append(ratio(runs[1], runs[2], "this tree / old"))
    counts: dict[str, int] = {}
    for kind, _, _ in plan:
        counts[kind] = counts.get(kind, 0) + 1
    result = {"model": "tiny (offline, random weights, CPU)", "requests": len(plan),
              "mix": counts, "rounds": args.rounds, "concurrency": args.concurrency, "long_tokens": args.long_tokens,
              "small_tokens": 8, "runs": runs}
    out = write_result("bench_serve_burst", result)
    print(f"\n{len(plan)} requests {counts}, {args.concurrency} clients, long = "
          f"{args.long_tokens} new tokens; tiny model on CPU")
    keys = ["seconds", "unexpected_5xx", "connection_errors_or_timeouts", "rss_before_mb",
            "rss_after_mb", "rss_peak_mb", "p50_ms", "p95_ms", "small_p95_vs_p50"]
    print(f"{'':<24}" + "".join(f"{k[:14]:>16}" for k in keys))
    for r in runs:
        print(f"{r['server']:<24}" + "".join(f"{r.get(k, '')!s:>16}" for k in keys))
    for r in runs[:3]:
        print(f"{r['server']}: {r.get('statuses')}; RSS MB after each round "
              f"{r.get('rss_after_each_round_mb')}")
    print(f"results → {out}")


# --- adapters -------------------------------------------------------------------------------

def make_adapters(base: str, folder: Path, n: int) -> dict[str, str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapters = {}
    for i in range(n):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                               LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        model.save_pretrained(str(folder / f"repo{i}"))
        adapters[f"repo{i}"] = str(folder / f"repo{i}")
    return adapters


def load_time(base: str, adapter: str, repeats: int = 3) -> float:
    """Seconds to load the base model with one adapter merged in, median of `repeats`."""
    from harness.models.load import load_model

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_model(base, adapter=adapter, merge=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def drive(url: str, models: list[str], n: int, concurrency: int, max_tokens: int) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=300)

    def one(i: int) -> tuple[float, int]:
        fim = i % 2 == 1
        t0 = time.perf_counter()
        r = client.completions.create(model=models[i % len(models)], prompt=PREFIXES[i % 4],
                                      suffix=SUFFIXES[i % 4] if fim else None,
                                      max_tokens=max_tokens, temperature=0)
        return time.perf_counter() - t0, r.usage.completion_tokens

    for i in range(2 * len(models)):  # warm up every model once
        one(i)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    latencies = sorted(1000 * s for s, _ in results)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": n, "seconds": round(wall, 3), "completions_per_s": round(n / wall, 2),
            "tokens_per_s": round(sum(t for _, t in results) / wall, 1),
            "p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "p99_ms": round(q[98], 1)}


def adapters_bench(args: argparse.Namespace, base: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(base, Path(tmp), args.adapters)
        names = list(adapters)
        scenarios = [("base model only (baseline)", {}, ["base"]),
                     ("1 adapter", {names[0]: adapters[names[0]]}, [names[0]]),
                     (f"{len(names)} adapters, switched per request", adapters, names),
                     (f"{len(names)} adapters + base, mixed", adapters, ["base", *names])]
        runs = []
        for label, served, models in scenarios:
            proc, url, startup = start(base, served)
            try:
                runs.append({"scenario": label, "adapters_loaded": len(served),
                             "startup_s": round(startup, 2),
                             **drive(url, models, args.requests, args.concurrency, args.max_tokens)})
            finally:
                stop(proc)
        reload_s = load_time(base, adapters[names[0]])
    baseline = runs[0]
    for r in runs:
        r["throughput_vs_baseline"] = round(r["completions_per_s"] / baseline["completions_per_s"], 2)
        r["p50_vs_baseline"] = round(r["p50_ms"] / baseline["p50_ms"], 2)
    result = {"model": "tiny (offline, CPU)", "requests": args.requests,
              "concurrency": args.concurrency, "max_tokens": args.max_tokens, "runs": runs,
              "reload_base_plus_adapter_s": round(reload_s, 3)}
    out = write_result("bench_serve", result)

    print(f"\n{args.requests} /v1/completions requests (half FIM), {args.concurrency} clients, "
          f"max_tokens {args.max_tokens}, greedy; tiny model on CPU")
    print(f"{'scenario':<38}{'req/s':>8}{'tok/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'x base':>8}{'start s':>9}")
    for r in runs:
        print(f"{r['scenario']:<38}{r['completions_per_s']:>8.2f}{r['tokens_per_s']:>8.1f}"
              f"{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{r['p99_ms']:>9.1f}"
              f"{r['throughput_vs_baseline']:>7.2f}x{r['startup_s']:>9.2f}")
    p50 = runs[2]["p50_ms"] / 1000
    print(f"loading base + 1 adapter instead (a reload per switch): {reload_s:.3f} s, "
          f"{reload_s / p50:.1f}x the p50 latency of a switched request")
    print(f"results → {out}")


# --- choice (the local judge) ----------------------------------------------------------------

def judge_prompts(n: int, tokens: int, tokenizer) -> list[str]:
    """`n` prompts of about `tokens` tokens each, cut from this repository's own source."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "harness").rglob("*.py")))
    ids = tokenizer.encode(text, add_special_tokens=False)
    step = max(1, (len(ids) - tokens) // n)
    return ["Grade the change below from 1 to 5.\n\n" + tokenizer.decode(ids[i * step:i * step + tokens])
            for i in range(n)]


def choice_bench(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from harness.models.load import resolve_model_path

    cache = os.environ.get("HARNESS_CACHE", str(Path.home() / ".cache" / "harness"))
    model_cfg = OmegaConf.load(ROOT / "conf" / "model" / "smollm2-135m.yaml")
    base = resolve_model_path(model_cfg, cache)
    prompts = judge_prompts(args.calls, args.prompt_tokens, AutoTokenizer.from_pretrained(base))
    choice_sets = [[str(i) for i in range(1, 6)], ["A", "B", "tie"]]

    def drive(url: str) -> dict:
        import openai
        client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)
        picks, t0 = [], time.perf_counter()
        for i, prompt in enumerate(prompts):
            r = client.chat.completions.create(
                model="base", messages=[{"role": "user", "content": prompt}], max_tokens=8,
                extra_body={"guided_choice": choice_sets[i % 2]})
            picks.append(r.choices[0].message.content)
        return {"s_per_call": round((time.perf_counter() - t0) / len(prompts), 3), "picks": picks}

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, root in [("this tree", ROOT), (f"old ({args.old})", old_tree(args.old, Path(tmp)))]:
            proc, url, _ = start(base, {}, root)
            try:
                drive(url)  # warm-up round, not timed
                runs.append({"server": label, **drive(url)})
            finally:
                stop(proc)
    ratio = round(runs[1]["s_per_call"] / runs[0]["s_per_call"], 2)
    same = runs[0]["picks"] == runs[1]["picks"]
    result = {"model": "SmolLM2-135M-Instruct (offline, real weights, CPU)", "calls": args.calls,
              "prompt_tokens": args.prompt_tokens, "runs": runs, "speedup_vs_old": ratio,
              "same_choices": same}
    out = write_result("bench_serve_choice", result)
    for r in runs:
        print(f"{r['server']:<24} {r['s_per_call']:>8} s/call  picks {''.join(r['picks'])}")
    print(f"this tree is {ratio}x the old one's speed; same choices: {same}\nresults → {out}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="bench")
    b = sub.add_parser("burst")
    b.add_argument("--requests", type=int, default=200)
    b.add_argument("--concurrency", type=int, default=16)
    b.add_argument("--long-tokens", type=int, default=256)
    b.add_argument("--rounds", type=int, default=1, help="send the burst this many times")
    b.add_argument("--old", help="git revision whose harness/serve to compare against")
    b.add_argument("--deadline-s", type=float, default=900, help="send nothing after this")
    b.add_argument("--timeout-s", type=float, default=600, help="per request")
    a = sub.add_parser("adapters")
    a.add_argument("--requests", type=int, default=64)
    a.add_argument("--concurrency", type=int, default=4)
    a.add_argument("--adapters", type=int, default=4)
    a.add_argument("--max-tokens", type=int, default=16)
    c = sub.add_parser("choice")
    c.add_argument("--old", required=True, help="git revision to compare against")
    c.add_argument("--calls", type=int, default=10)
    c.add_argument("--prompt-tokens", type=int, default=1500)
    args = parser.parse_args(sys.argv[1:] if len(sys.argv) > 1 else ["burst"])
    if args.bench == "choice":
        choice_bench(args)
        return

    sys.path.insert(0, str(ROOT))
    from harness.models.tiny import build_tiny_model

    cache = os.environ.get("HARNESS_CACHE", str(Path.home() / ".cache" / "harness"))
    base = str(build_tiny_model(cache))
    (adapters_bench if args.bench == "adapters" else burst)(args, base)


if __name__ == "__main__":
    main()
