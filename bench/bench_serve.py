"""Completions per second and latency percentiles of the model server (harness/serve/app.py)
over loopback HTTP: the base model alone (the baseline), one LoRA adapter, and several adapters
selected per request (round robin, so nearly every request switches adapter).

The server runs in its own process (as `harness serve` does), over the offline tiny model and
random LoRA adapters (r=16 on every linear layer, like conf/train/lora.yaml); clients send
/v1/completions requests (half of them fill-in-the-middle, with a `suffix`) from
`--concurrency` threads. Every scenario gets the same requests, greedy, the same max_tokens.
Also measured, as the cost a server would pay without per-request adapters: loading the base
model plus one adapter (what reloading on every switch would cost).

    .venv/bin/python bench/bench_serve.py [--requests 64] [--concurrency 4] [--adapters 4]
                                          [--max-tokens 16]

Writes bench/results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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


def serve(base: str, adapters: dict[str, str], port: int) -> None:
    import uvicorn

    from harness.serve.app import create_app

    uvicorn.run(create_app(base, adapters=adapters), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def start(base: str, adapters: dict[str, str]) -> tuple[multiprocessing.Process, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(base, adapters, port),
                                                        daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/v1"
    import httpx

    while time.perf_counter() - t0 < 300:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    from harness.models.tiny import build_tiny_model

    cache = os.environ.get("HARNESS_CACHE", str(Path.home() / ".cache" / "harness"))
    base = str(build_tiny_model(cache))
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
                proc.kill()
                proc.join()
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


if __name__ == "__main__":
    main()
