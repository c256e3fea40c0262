"""Training throughput and memory: the harness's trainer vs a bare PEFT loop on the same
batches, packing vs padding, LoRA vs QLoRA; on the tiny model or the real offline one
(`--model smollm2-135m`).

Data: this repository mined and formatted by the harness's own stages (chat pairs from its
history, FIM and left-to-right windows from its sources), so lengths vary as in real use.
Every case trains in a fresh subprocess of this script (clean peak RSS) with the same config
except the setting under test, and reports:

- tokens/s: real (non-padding) tokens trained on / train runtime, over the same steps, and
  per CPU-second of the process (less sensitive to other load on a shared machine);
- real-token share per batch: real tokens / slots, where the slots are the padded batch tensor
  (padding) or batch rows x max_length (packing: padding-free, so this is how full the packs
  are); mean and minimum over every batch of the epoch;
- memory: the model's footprint (parameters + buffers, `get_memory_footprint`: what NF4
  saves), peak RSS of the process (ru_maxrss) and RSS after training. On CPU the RSS also
  counts the memory-mapped checkpoint pages the loader touches and bitsandbytes' quantization
  temporaries, so it is reported as measured, next to the footprint.

The default tiny model is 4 MB, so LoRA vs QLoRA memory is also measured on a scaled-up tiny
model (same builder, ~100M parameters, 128-token sequences) where the weights dominate.

    .venv/bin/python bench/bench_train.py [--steps 30] [--max-length 512] [--repeats 2]
                                          [--backend auto|hf|unsloth] [--model tiny|smollm2-135m]

Writes bench/results/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ~100M parameters; short sequences and 3 steps, so the weights, not activations, set the RSS.
LARGE = ["model.tiny.hidden_size=1024", "model.tiny.num_layers=8", "+model.tiny.intermediate_size=2816",
         "+model.tiny.num_heads=16", "+model.tiny.num_kv_heads=4", "train.max_length=128",
         "train.batch_size=2", "train.max_steps=3"]
CASES = {
    "lora-padding": ["train.packing=false"],
    "lora-packing": ["train.packing=true"],
    "qlora-padding": ["train=qlora", "train.packing=false"],
    "lora-100M": ["train.packing=false", *LARGE],
    "qlora-100M": ["train=qlora", "train.packing=false", *LARGE],
    # the baseline: a bare PEFT loop (torch AdamW, the model's own loss) over the very batches the
    # harness trainer's dataloader yields, same model, LoRA config, lr and steps
    "bare-peft-padding": ["train.packing=false"],
}


def compose(run_dir: Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from harness.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[f"run_dir={run_dir}", "run_name=bench", *overrides])


def base_overrides(args) -> list[str]:
    return [f"model={args.model}", f"data.repo={args.repo}", "data.mine.max_changed_lines=100000", "data.mine.max_files=1000",
            "data.format.code_share=null", f"data.format.max_length={args.max_length}",
            f"train.max_steps={args.steps}", "train.batch_size=4", "train.report_to=none",
            f"train.backend={args.backend}",
            "train.save_steps=100000", "train.logging_steps=100000"]


def batch_shares(trainer, max_length: int, packing: bool) -> list[float]:
    """Real tokens / slots for every batch the trainer's dataloader yields in one epoch."""
    shares, rows_left, size = [], len(trainer.train_dataset), trainer.args.per_device_train_batch_size
    for batch in trainer.get_train_dataloader():
        rows = min(size, rows_left)
        rows_left -= rows
        if packing:  # padding-free: one flat row of real tokens
            shares.append(batch["input_ids"].numel() / (rows * max_length))
        else:
            mask = batch["attention_mask"]
            shares.append(mask.sum().item() / mask.numel())
    return shares


def child(case: str, run_dir: Path, args) -> dict:
    """One measurement, in this (fresh) process."""
    import psutil

    from harness.stages import require_output
    from harness.train.stage import build_trainer

    cfg = compose(run_dir, [*base_overrides(args), *CASES[case]])
    trainer, backend, *_ = build_trainer(cfg.train, cfg.model, require_output(cfg, "format"),
                                         Path(tempfile.mkdtemp(prefix="bench-train-")),
                                         run_name=cfg.run_name, cache_dir=cfg.cache_dir)
    shares = batch_shares(trainer, args.max_length, bool(cfg.train.packing))
    t0, c0 = time.perf_counter(), time.process_time()
    if case.startswith("bare-peft"):
        backend, tokens = "bare PEFT loop", bare_loop(trainer, args.steps, float(cfg.train.lr))
    else:
        trainer.train()
        tokens = int(trainer.state.num_input_tokens_seen)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"case": case, "backend": backend, "method": cfg.train.method, "steps": trainer.state.global_step,
            "tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "cpu_seconds": round(cpu, 3), "tokens_per_cpu_s": round(tokens / cpu, 1),
            "share_mean": round(sum(shares) / len(shares), 4), "share_min": round(min(shares), 4),
            "batches": len(shares), "params": params,
            "footprint_mb": round(trainer.model.get_memory_footprint() / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_after_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}


def bare_loop(trainer, steps: int, lr: float) -> int:
    """`steps` optimizer steps of a plain PyTorch loop over the trainer's own batches; the real
    (non-padding) tokens it trained on."""
    import torch

    model = trainer.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    tokens, done = 0, 0
    while done < steps:
        for batch in trainer.get_train_dataloader():
            batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            done += 1
            if done == steps:
                break
    return tokens


def prepare(run_dir: Path, args) -> dict:
    from harness.stages import run_stage

    return run_stage(compose(run_dir, base_overrides(args)), "format")


def measure(case: str, run_dir: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--run-dir", str(run_dir), "--steps", str(args.steps),
           "--max-length", str(args.max_length), "--repo", str(args.repo), "--backend", args.backend,
           "--model", args.model]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{case} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs per throughput case; the one with the most tokens per cpu-s is kept")
    ap.add_argument("--repo", default=str(ROOT))
    ap.add_argument("--backend", default="auto", help="auto | hf | unsloth (unsloth: CUDA only)")
    ap.add_argument("--model", default="tiny", help="a conf/model entry, e.g. smollm2-135m (the "
                    "real offline model: then only the LoRA throughput cases and the bare loop run)")
    ap.add_argument("--child")
    ap.add_argument("--run-dir")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.run_dir), args)))
        return

    load0 = os.getloadavg()  # a shared machine: record how busy it was
    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-run-"))
    card = prepare(run_dir, args)
    print(f"dataset: {card['examples']}, {card['tokens']} tokens, max_length {args.max_length}")
    results: dict[str, dict] = {}
    for rep in range(args.repeats):  # interleaved, so load on a shared machine hits all alike
        cases = ("lora-padding", "lora-packing", "bare-peft-padding",
                 *(("qlora-padding",) if args.model == "tiny" else ()))
        for case in cases:
            r = measure(case, run_dir, args)
            if case not in results or r["tokens_per_cpu_s"] > results[case]["tokens_per_cpu_s"]:
                results[case] = r
            print(f"  [{rep}] {case}: {r['tokens_per_s']} tokens/s, {r['tokens_per_cpu_s']} per cpu-s",
                  flush=True)
    for case in ("lora-100M", "qlora-100M") if args.model == "tiny" else ():
        results[case] = measure(case, run_dir, args)
        print(f"  {case}: peak RSS {results[case]['peak_rss_mb']} MB", flush=True)

    print(f"\n{'case':<14} {'params':>11} {'tokens/s':>9} {'tok/cpu-s':>9} {'real share':>10} "
          f"{'min share':>9} {'model MB':>9} {'peak RSS MB':>11} {'RSS after MB':>12}")
    for r in results.values():
        print(f"{r['case']:<14} {r['params']:>11,} {r['tokens_per_s']:>9.0f} {r['tokens_per_cpu_s']:>9.0f} "
              f"{r['share_mean']:>10.3f} "
              f"{r['share_min']:>9.3f} {r['footprint_mb']:>9.1f} {r['peak_rss_mb']:>11.0f} "
              f"{r['rss_after_mb']:>12.0f}")
    pad, pack, bare = results["lora-padding"], results["lora-packing"], results["bare-peft-padding"]
    ratios = {
        "harness_vs_bare_peft_tokens_per_s": round(pad["tokens_per_s"] / bare["tokens_per_s"], 3),
        "harness_vs_bare_peft_tokens_per_cpu_s": round(pad["tokens_per_cpu_s"] / bare["tokens_per_cpu_s"], 3),
        "harness_packing_vs_bare_peft_tokens_per_s": round(pack["tokens_per_s"] / bare["tokens_per_s"], 3),
        "packing_vs_padding_tokens_per_s": round(pack["tokens_per_s"] / pad["tokens_per_s"], 3),
        "packing_vs_padding_tokens_per_cpu_s": round(pack["tokens_per_cpu_s"] / pad["tokens_per_cpu_s"], 3),
        "packing_real_share": pack["share_mean"], "padding_real_share": pad["share_mean"],
    }
    if args.model == "tiny":
        ratios.update({
            "qlora_vs_lora_tokens_per_cpu_s": round(results["qlora-padding"]["tokens_per_cpu_s"]
                                                    / pad["tokens_per_cpu_s"], 3),
            "qlora_vs_lora_peak_rss_tiny": round(results["qlora-padding"]["peak_rss_mb"]
                                                 / pad["peak_rss_mb"], 3),
            "qlora_vs_lora_model_memory_100M": round(results["qlora-100M"]["footprint_mb"]
                                                     / results["lora-100M"]["footprint_mb"], 3),
            "qlora_vs_lora_peak_rss_100M": round(results["qlora-100M"]["peak_rss_mb"]
                                                 / results["lora-100M"]["peak_rss_mb"], 3),
            "qlora_vs_lora_rss_after_100M": round(results["qlora-100M"]["rss_after_mb"]
                                                  / results["lora-100M"]["rss_after_mb"], 3),
        })
    print("\n" + "\n".join(f"{k}: {v}" for k, v in ratios.items()))
    if pack["share_mean"] < 0.95:
        print("WARNING: packing filled less than 95% of the slots")
    out = ROOT / "bench" / "results" / "bench_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform(),
                                           "load_average_start_end": [load0, os.getloadavg()]},
                               "settings": vars(args), "dataset": card["examples"],
                               "results": results, "ratios": ratios}, indent=2) + "\n")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
