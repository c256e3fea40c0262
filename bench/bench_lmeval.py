"""The harness's HumanEval runner against stock lm-eval on the real offline model: the same
verdict on every problem, and generation time as a ratio.

Both take the same greedy bigcode prompts, stop words and sandbox: our batched runner
(harness/eval/runner.py, hf engine) and lm-eval's `hf` backend through the project's task
include path (harness/eval/lm_eval_tasks, what `lm_eval --model hf --include_path ...` runs).
Each is timed in its own fresh subprocess after the model is loaded, over the first N HumanEval
problems (all 164 by default), and the per-problem verdicts are compared.

    .venv/bin/python bench/bench_lmeval.py [--limit 164] [--batch-size 16] [--max-new-tokens 128]

Writes bench/results/bench_lmeval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _model() -> str:
    from omegaconf import OmegaConf

    from harness.models.load import resolve_model_path

    cache = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return resolve_model_path(OmegaConf.load(ROOT / "conf/model/smollm2-135m.yaml"), cache)


def child(which: str, limit: int, batch_size: int, max_new_tokens: int) -> dict:
    """One runner in this process: rows and the seconds spent generating + scoring."""
    from harness.eval.engines.base import GREEDY
    from harness.sandbox.execute import Sandbox

    model_ref, sandbox = _model(), Sandbox(timeout_s=10, workers=2)
    if which == "lm_eval":
        from harness.eval.lmeval import run_lm_eval

        start = time.perf_counter()
        rows = run_lm_eval("humaneval", limit, model_ref=model_ref, adapter=None, label="base",
                           decoding=GREEDY, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           sandbox=sandbox, device="cpu")
    else:
        import torch

        from harness.benchmarks import load_humaneval
        from harness.eval.engines.hf import HFEngine
        from harness.eval.runner import run_codegen
        from harness.models.load import load_model, load_tokenizer

        tok = load_tokenizer(model_ref)
        engine = HFEngine(load_model(model_ref), tok, batch_size=batch_size,
                          max_new_tokens=max_new_tokens)
        torch.set_grad_enabled(False)
        start = time.perf_counter()
        rows = run_codegen(load_humaneval(limit), engine, tok, sandbox, GREEDY, "base")
    return {"seconds": time.perf_counter() - start,
            "verdicts": {r["item_id"]: bool(r["passed"]) for r in rows},
            "outputs": {r["item_id"]: r["output"] for r in rows}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=164)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--child", choices=["harness", "lm_eval"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.limit, args.batch_size, args.max_new_tokens)))
        return
    runs = {}
    for which in ("harness", "lm_eval"):
        out = subprocess.run([sys.executable, __file__, "--child", which, "--limit", str(args.limit),
                              "--batch-size", str(args.batch_size),
                              "--max-new-tokens", str(args.max_new_tokens)],
                             check=True, capture_output=True, text=True)
        runs[which] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{which}: {runs[which]['seconds']:.1f} s, pass@1 "
              f"{sum(runs[which]['verdicts'].values()) / len(runs[which]['verdicts']):.3f}")
    ours, theirs = runs["harness"], runs["lm_eval"]
    differ = sorted(k for k in ours["verdicts"] if ours["verdicts"][k] != theirs["verdicts"].get(k))
    text_differ = sorted(k for k in ours["outputs"]
                         if ours["outputs"][k].rstrip() != theirs["outputs"].get(k, "").rstrip())
    result = {
        "model": "SmolLM2-135M-Instruct (model=smollm2-135m)", "problems": len(ours["verdicts"]),
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "pass@1": {k: sum(v["verdicts"].values()) / len(v["verdicts"]) for k, v in runs.items()},
        "verdicts_differ": differ, "outputs_differ": text_differ,
        "seconds": {k: round(v["seconds"], 1) for k, v in runs.items()},
        "speedup_vs_lm_eval": round(theirs["seconds"] / ours["seconds"], 2),
    }
    from _results import write_result

    path = write_result("bench_lmeval", result)
    print(f"verdicts differ on {len(differ)} of {result['problems']} problems {differ[:10]}; "
          f"outputs differ on {len(text_differ)}; harness is {result['speedup_vs_lm_eval']}x "
          f"lm-eval's speed → {path}")


if __name__ == "__main__":
    main()
