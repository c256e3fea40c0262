"""What only a GPU can show, in one short run (docs/gpu.md has the two device commands).

A random-weight model with Qwen2.5-Coder-1.5B's shapes (bench/configs/, no hub) is trained for
a fixed number of steps on the same token batches with the hf backend (LoRA, and QLoRA through
bitsandbytes) and, in a second step, the unsloth backend: tokens/s, peak memory
(`torch.cuda.max_memory_allocated` above the loaded model) beside the memory plan's estimate
(harness/train/vram.py), and the loss after the last step. Then batched eval generation (hf
engine) for the base model and a LoRA candidate on HumanEval prompts, scored in the sandbox, so
the whole eval path runs. Results go to a JSON file and a markdown table.

  --part hf        hf LoRA + QLoRA training, eval generation and scoring (wheels: step 1)
  --part unsloth   unsloth LoRA training, its loss against the hf LoRA loss of part hf (step 2)
  --dry-run        on the CPU with tiny shapes: every code path above except unsloth's

The training loop is a plain PyTorch loop over the backends' loaders (the same loaders as
`harness train`), because TRL and datasets are not on the GPU machine; the same loop and
batches for both backends is also what makes their losses comparable.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.train import vram  # noqa: E402

CONFIG = ROOT / "bench" / "configs" / "qwen2.5-coder-1.5b.json"
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2048}
LOSS_TOLERANCE = 0.02  # relative: unsloth vs hf LoRA loss after the same steps on the same data


def settings(dry_run: bool) -> dict:
    """Steps, batch and sequence length: small enough for minutes on one GPU (the whole check
    must stay under 8 minutes), tiny on the CPU."""
    if dry_run:
        return {"steps": 2, "batch": 2, "seq": 64, "eval_problems": 3, "eval_batch": 3,
                "new_tokens": 8}
    return {"steps": 20, "batch": 2, "seq": 1024, "eval_problems": 64, "eval_batch": 32,
            "new_tokens": 128}


def model_config(dry_run: bool) -> dict:
    config = json.loads(CONFIG.read_text())
    return {**config, **TINY} if dry_run else config


def word_tokenizer(vocab_size: int):
    """A byte-level tokenizer of `vocab_size` ids: the 256 byte symbols (so any prompt encodes),
    the end token, and made-up words filling the rest (a random model emits any id, and each
    must decode). No merges to learn, no download (`tokenizers`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    tok = Tokenizer(models.BPE(vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def build_model(config: dict, out: Path, dtype) -> Path:
    """Random weights with `config`'s shapes, saved as a model directory the loaders read
    (the tokenizer is `word_tokenizer`, built in memory where it is needed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items()
                                                        if k not in ("model_type", "torch_dtype")})
    cfg.architectures = config["architectures"]
    cfg.bos_token_id = cfg.eos_token_id = cfg.pad_token_id = 256  # word_tokenizer's end token
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = 256
    model.save_pretrained(out)
    return out


def train_cfg(method: str, backend: str, seq: int, checkpointing: bool):
    from omegaconf import OmegaConf

    lora = OmegaConf.load(ROOT / "conf" / "train" / "lora.yaml")
    return OmegaConf.create({
        "model": {"revision": None},
        "train": {"method": method, "backend": backend, "max_length": seq, "seed": 0,
                  "gradient_checkpointing": checkpointing, "optim": "adamw_torch",
                  # dropout 0 for both backends: Unsloth's fast path needs it, and the same
                  # settings are what makes the two losses comparable
                  "lora": {**OmegaConf.to_container(lora.lora), "dropout": 0.0},
                  "qlora": OmegaConf.to_container(lora.qlora)}})


def batches(vocab: int, steps: int, batch: int, seq: int) -> list:
    import torch

    g = torch.Generator().manual_seed(1234)
    return [torch.randint(2, vocab, (batch, seq), generator=g) for _ in range(steps)]


def train(name: str, model_dir: Path, method: str, backend: str, s: dict, shapes, cuda: bool) -> dict:
    """`steps` optimizer steps of LoRA on the same batches: tokens/s, peak memory, last loss."""
    import torch
    from peft import get_peft_model

    from harness.train.backends import LOADERS

    cfg = train_cfg(method, backend, s["seq"], checkpointing=cuda)
    model, peft_config = LOADERS[backend](str(model_dir), cfg.train, cfg.model)
    if peft_config is not None:
        model = get_peft_model(model, peft_config)
        if cuda:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
    device = "cuda" if cuda else "cpu"
    if method == "lora" and backend == "hf":
        model.to(device)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    data = batches(shapes.vocab, s["steps"], s["batch"], s["seq"])
    losses = []
    with vram.PeakMemory() as peak:
        t0 = time.perf_counter()
        for ids in data:
            ids = ids.to(device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    setup = vram.Setup(method=method, backend=backend, batch_size=s["batch"], seq_len=s["seq"],
                       checkpointing=cuda, dtype_bytes=2 if cuda else 4)
    p = vram.plan(shapes, setup)
    result = {"run": name, "backend": backend, "method": method, "steps": len(losses),
              "tokens_per_s": round(s["steps"] * s["batch"] * s["seq"] / seconds, 1),
              "peak_mb": round(peak.peak / 2**20, 1),
              "plan_mb": round((p.total - p.terms["weights"]) / 2**20, 1),
              "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
    return result


def evaluate(model_dir: Path, adapter_from: str, s: dict, cuda: bool, out: Path) -> list[dict]:
    """Batched generation for the base model and a LoRA candidate on HumanEval prompts, scored
    in the sandbox: samples/s and pass@1 (near 0 for random weights; the path is what runs)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.benchmarks import load_humaneval
    from harness.eval.engines.hf import HFEngine
    from harness.eval.engines.pool import placement
    from harness.eval.runner import run_codegen
    from harness.models.load import load_model
    from harness.sandbox.execute import Sandbox

    adapter = out / "adapter"
    if not adapter.exists():  # a LoRA candidate with non-zero B, so it differs from the base
        torch.manual_seed(0)
        base = load_model(str(model_dir))
        peft = get_peft_model(base, LoraConfig(r=16, target_modules="all-linear",
                                               init_lora_weights=False))
        peft.save_pretrained(adapter)
        del base, peft
    # not saved with the model: AutoTokenizer would rebuild it as a Qwen2Tokenizer
    tok = word_tokenizer(json.loads((model_dir / "config.json").read_text())["vocab_size"])
    problems = load_humaneval(limit=s["eval_problems"])
    sandbox = Sandbox(timeout_s=10, workers=4)
    device = "cuda" if cuda else "cpu"
    rows = []
    for label, path in (("base", None), ("candidate", str(adapter))):
        model = load_model(str(model_dir), adapter=path, **placement(device))
        if cuda:
            model = model.to(torch.bfloat16)
        engine = HFEngine(model, tok, batch_size=s["eval_batch"], max_new_tokens=s["new_tokens"])
        t0 = time.perf_counter()
        scored = run_codegen(problems, engine, tok, sandbox, _greedy(), label)
        seconds = time.perf_counter() - t0
        gen = sum(r.get("gen_seconds") or 0 for r in scored)
        rows.append({"run": f"eval {label}", "device": str(model.device),
                     "samples": len(scored), "samples_per_s": round(len(scored) / gen, 2),
                     "seconds_with_scoring": round(seconds, 1),
                     "pass@1": sum(bool(r.get("passed")) for r in scored) / len(scored)})
        del model, engine
    return rows


def _greedy():
    from harness.eval.engines.base import GREEDY

    return GREEDY


def table(rows: list[dict]) -> str:
    keys = [k for k in ("run", "tokens_per_s", "peak_mb", "plan_mb", "last_loss", "device",
                        "samples_per_s", "pass@1", "note") if any(k in r for r in rows)]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def environment(cuda: bool) -> dict:
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "time_utc": time.strftime("%Y-%m-%d %H:%M")}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return env


def loss_agreement(hf: dict, unsloth: dict) -> dict:
    gap = abs(hf["last_loss"] - unsloth["last_loss"]) / hf["last_loss"]
    return {"run": "unsloth vs hf LoRA", "note": f"relative loss gap {gap:.4f} "
            f"({'within' if gap <= LOSS_TOLERANCE else 'OUTSIDE'} {LOSS_TOLERANCE})",
            "agree": gap <= LOSS_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=("hf", "unsloth", "all"), default="all")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check")
    args = ap.parse_args(argv)
    if args.part in ("unsloth", "all") and not args.dry_run:
        from harness.train.backends import import_unsloth_first

        try:
            import_unsloth_first()  # before transformers/peft, as Unsloth requires
        except Exception as e:  # ImportError, or Unsloth's own refusal without a GPU
            print(f"unsloth cannot be imported ({type(e).__name__}: {e}). Fix: install step 2's "
                  "wheels (docs/gpu.md) on a CUDA machine, or --part hf.", file=sys.stderr)
            return 2
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA GPU: run with --dry-run on the CPU", file=sys.stderr)
        return 2
    s, config = settings(args.dry_run), model_config(args.dry_run)
    shapes = vram.Shapes.from_config(config)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(config, args.out / "model", torch.bfloat16 if cuda else torch.float32)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {"rows": []}
    results["environment"] = environment(cuda)
    rows = [r for r in results["rows"]
            if not (args.part in ("hf", "all") and r.get("backend") == "hf")]
    if args.part in ("hf", "all"):
        rows.append(train("hf LoRA", model_dir, "lora", "hf", s, shapes, cuda))
        rows.append(train("hf QLoRA", model_dir, "qlora", "hf", s, shapes, cuda))
        rows += evaluate(model_dir, "lora", s, cuda, args.out)
    if args.part in ("unsloth", "all"):
        if args.dry_run:
            rows.append({"run": "unsloth LoRA", "note": "skipped: Unsloth needs a CUDA GPU"})
        else:
            rows = [r for r in rows if r.get("backend") != "unsloth"]
            unsloth = train("unsloth LoRA", model_dir, "lora", "unsloth", s, shapes, cuda)
            rows.append(unsloth)
            hf = next((r for r in rows if r.get("run") == "hf LoRA"), None)
            if hf:
                rows.append(loss_agreement(hf, unsloth))
    results["rows"] = rows
    results["settings"] = s
    results_file.write_text(json.dumps(results, indent=2))
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    print(json.dumps(results["environment"]))
    print(text)
    bad = [r for r in rows if "last_loss" in r and not math.isfinite(r["last_loss"])]
    return 1 if bad or any(r.get("agree") is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
