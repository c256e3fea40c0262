"""The memory plan of one training step, computed from the model's config before any weight
loads, so a run that cannot fit is refused in seconds with a setting that would fit, instead of
dying with an out-of-memory error an hour in.

Terms (bytes, peak of one optimizer step; `a` is the compute dtype's size, 2 for bf16, 4 for
fp32 on the CPU):

- weights: every linear layer in `a` bytes, or NF4 for QLoRA (0.5 byte plus the quantization
  constants: one fp32 absmax per 64 weights, or with double quantization one byte per 64 plus
  one fp32 per 256 blocks). The hf backend's QLoRA path calls PEFT's
  `prepare_model_for_kbit_training`, which casts every non-4-bit parameter (embeddings, lm_head,
  norms) to fp32 (peft/utils/other.py, "cast all non INT8 parameters to fp32"); Unsloth does not.
- lora: adapter weights, their gradients and the optimizer's two states: fp32 (PEFT's
  `autocast_adapter_dtype` keeps adapters in fp32 under a bf16 base), 16 bytes per parameter
  with AdamW; bf16 under TRL's QLoRA path (8 bytes); 8-bit optimizers keep 2 bytes of state.
- activations: what autograd keeps per token and layer. Without gradient checkpointing, a
  Llama/Qwen2 block with SDPA attention saves about a·(7h + 3kv + 4i) bytes per token (norm
  inputs and outputs, q/k/v and their rotary outputs, the attention output, the MLP's gate, up,
  activation and product), plus each LoRA module's rank-r intermediate, plus with LoRA dropout
  a dropped copy of each adapted input and its mask; in bf16 each RMSNorm also keeps an fp32
  copy of its input, and fp32 adapters keep an fp32 copy of each adapted input. With
  checkpointing only each layer's input (a·h) is kept and one layer is recomputed at a time;
  Unsloth's checkpointing offloads even those inputs to host memory.
- logits: transformers' `ForCausalLMLoss` upcasts the logits to fp32 and cross-entropy keeps
  its fp32 log-softmax. The trainer drops the model's outputs before backward, so the peak is
  the log-softmax, its incoming gradient and the gradient it produces: tokens × vocab × 12
  bytes (forward: the logits, their fp32 copy and the log-softmax, a + 8).
  For Unsloth the plan assumes its own cross-entropy kernel (unsloth/kernels/
  cross_entropy_loss.py) keeps only the logits and their gradient (2a): an assumption, not
  measured anywhere yet.

Tokens = batch_size × max_length: the worst batch, and every batch with packing. The figures
this estimator was checked against are in docs/gpu.md (CPU peak RSS; no GPU yet).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

log = logging.getLogger(__name__)

GIB = 2**30
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit", "adamw_torch_8bit")
STATELESS_OPTIMIZERS = ("sgd",)


@dataclass(frozen=True)
class Shapes:
    """What the memory of a Llama/Qwen2/Mistral-style decoder depends on."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, config: Any) -> Shapes:
        """From a transformers config or its config.json as a dict."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        try:
            hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
            return cls(vocab=int(get("vocab_size")), hidden=hidden,
                       intermediate=int(get("intermediate_size")),
                       layers=int(get("num_hidden_layers")), heads=heads,
                       kv_heads=int(get("num_key_value_heads") or heads),
                       head_dim=int(get("head_dim") or hidden // heads),
                       tied=bool(get("tie_word_embeddings", False)))
        except (TypeError, ValueError) as e:
            raise HarnessError(f"cannot plan memory for this model: its config lacks a decoder "
                               f"shape ({e}). Fix: set train.memory.check=false to skip the "
                               f"plan for a non-Llama-style architecture.") from e

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, \
            self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def other_params(self) -> int:
        """Embeddings, lm_head (unless tied) and norms: never quantized."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + (2 * self.layers + 1) * self.hidden


@dataclass(frozen=True)
class Setup:
    """The training settings the plan depends on."""

    method: str = "lora"  # lora | qlora
    backend: str = "hf"  # hf | unsloth
    r: int = 16
    targets: tuple[str, ...] = LINEAR
    dropout: float = 0.0
    batch_size: int = 1
    seq_len: int = 2048
    checkpointing: bool = True
    optim: str = "adamw_torch"
    dtype_bytes: int = 2
    double_quant: bool = True
    grad_accum: int = 1

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True)
class Plan:
    shapes: Shapes
    setup: Setup
    terms: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    def table(self, device: str = "", budget: int | None = None) -> str:
        s = self.setup
        head = (f"memory plan: {s.backend} {s.method}, batch {s.batch_size} × {s.seq_len} tokens, "
                f"gradient checkpointing {'on' if s.checkpointing else 'off'}, LoRA r={s.r}, "
                f"{s.optim}, {'bf16' if s.dtype_bytes == 2 else 'fp32'}")
        rows = [f"  {name:<12} {gib(n):>9}" for name, n in self.terms.items()]
        rows.append(f"  {'total':<12} {gib(self.total):>9}")
        if budget is not None:
            rows.append(f"  {'available':<12} {gib(budget):>9}  ({device})")
        return "\n".join([head, *rows])


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def weight_bytes(shapes: Shapes, s: Setup) -> int:
    if s.method != "qlora":
        return (shapes.linear_params + shapes.other_params) * s.dtype_bytes
    # NF4 with blocksize 64 (bitsandbytes' default): fp32 absmax per block, or 8-bit absmax
    # per block plus an fp32 second-level constant per 256 blocks with double quantization.
    per_param = 0.5 + ((1 + 4 / 256) / 64 if s.double_quant else 4 / 64)
    other = 4 if s.backend == "hf" else s.dtype_bytes  # PEFT's kbit prep upcasts to fp32
    return int(shapes.linear_params * per_param) + shapes.other_params * other


def lora_params(shapes: Shapes, s: Setup) -> int:
    return shapes.layers * sum(s.r * (i + o) for name, (i, o) in shapes.linears().items()
                               if name in s.targets)


def adapter_dtype_bytes(s: Setup) -> int:
    """fp32, except under TRL's QLoRA path, which casts the adapters to bf16 (sft_trainer.py,
    "the PEFT adapter weights are converted to bf16"); an fp32 adapter under a bf16 base makes
    PEFT cast each adapted input to fp32 (`_cast_input_dtype`)."""
    return s.dtype_bytes if s.method == "qlora" and s.backend == "hf" else 4


def lora_bytes(shapes: Shapes, s: Setup) -> int:
    """Adapter weights + gradients + optimizer states (AdamW keeps two, in the param dtype)."""
    name, p = s.optim.lower(), adapter_dtype_bytes(s)
    states = 0 if name in STATELESS_OPTIMIZERS else 2 if name in EIGHT_BIT_OPTIMIZERS else 2 * p
    return lora_params(shapes, s) * (p + p + states)


def layer_activation_bytes(shapes: Shapes, s: Setup) -> int:
    """What one block keeps for its backward pass, per token (see the module docstring)."""
    h, i, a = shapes.hidden, shapes.intermediate, s.dtype_bytes
    kv = shapes.kv_heads * shapes.head_dim
    inputs = sum(i_ for name, (i_, _) in shapes.linears().items() if name in s.targets)
    per_token = a * (7 * h + 3 * kv + 4 * i) + adapter_dtype_bytes(s) * s.r * len(s.targets)
    if a < 4:
        per_token += 2 * 4 * h  # each RMSNorm's fp32 copy of its input
    if adapter_dtype_bytes(s) > a:
        per_token += adapter_dtype_bytes(s) * inputs  # each adapted input cast to fp32
    if s.dropout > 0:
        per_token += (a + 1) * inputs  # a dropped copy and a bool mask per adapted input
    return per_token


def activation_bytes(shapes: Shapes, s: Setup) -> int:
    layer = layer_activation_bytes(shapes, s) * s.tokens
    if not s.checkpointing:
        return shapes.layers * layer + 3 * shapes.hidden * s.dtype_bytes * s.tokens
    kept = 0 if s.backend == "unsloth" else shapes.layers * shapes.hidden * s.dtype_bytes * s.tokens
    return kept + layer  # the layer inputs, and one layer recomputed at a time


def logits_bytes(shapes: Shapes, s: Setup) -> int:
    per = 2 * s.dtype_bytes if s.backend == "unsloth" else max(12, s.dtype_bytes + 8)
    return s.tokens * shapes.vocab * per


def plan(shapes: Shapes, setup: Setup) -> Plan:
    return Plan(shapes, setup, {
        "weights": weight_bytes(shapes, setup),
        "lora+optim": lora_bytes(shapes, setup),
        "activations": activation_bytes(shapes, setup),
        "logits": logits_bytes(shapes, setup),
    })


def fitting_setup(shapes: Shapes, s: Setup, budget: int) -> Setup | None:
    """The first change that fits, keeping the effective batch (batch × grad_accum): gradient
    checkpointing on, then halving the batch (doubling accumulation), then halving max_length."""
    candidates = []
    if not s.checkpointing:
        candidates.append(replace(s, checkpointing=True))
    base = replace(s, checkpointing=True)
    b, acc = base.batch_size, base.grad_accum
    while b > 1:
        b, acc = b // 2, acc * 2
        candidates.append(replace(base, batch_size=b, grad_accum=acc))
    seq = base.seq_len
    while seq > 256:
        seq //= 2
        candidates.append(replace(base, batch_size=1, grad_accum=base.batch_size * base.grad_accum,
                                  seq_len=seq))
    return next((c for c in candidates if plan(shapes, c).total <= budget), None)


def describe_fix(shapes: Shapes, old: Setup, new: Setup | None) -> str:
    if new is None:
        return ("nothing fits, even batch 1 with gradient checkpointing and max_length 256. Fix: "
                "train=qlora, a smaller model, or a device with more memory")
    changes = []
    if new.checkpointing and not old.checkpointing:
        changes.append("train.gradient_checkpointing=true")
    if new.batch_size != old.batch_size:
        changes += [f"train.batch_size={new.batch_size}", f"train.grad_accum={new.grad_accum}"]
    if new.seq_len != old.seq_len:
        changes.append(f"data.format.max_length={new.seq_len}")
    return "Fix: " + " ".join(changes) + f" (planned {gib(plan(shapes, new).total)})"


def generation_bytes(shapes: Shapes, batch: int, tokens: int, dtype_bytes: int = 2) -> int:
    """Peak of batched generation (transformers ``generate``, the adapter merged): the weights,
    the KV cache of `batch` sequences of `tokens` (prompt + new) tokens, one layer's prefill
    activations, and the fp32 scores of the last position."""
    kv = 2 * shapes.layers * shapes.kv_heads * shapes.head_dim * dtype_bytes
    prefill = (4 * shapes.hidden + 2 * shapes.intermediate) * dtype_bytes
    weights = (shapes.linear_params + shapes.other_params) * dtype_bytes
    return weights + batch * tokens * (kv + prefill) + batch * shapes.vocab * 4 * 2


def check_generation(shapes: Shapes, batch: int, tokens: int, dtype_bytes: int, device: str,
                     device_bytes: int, headroom: float = 0.9) -> None:
    """Refuse an eval batch whose generation will not fit, naming the largest that does."""
    budget = int(device_bytes * headroom)
    need = generation_bytes(shapes, batch, tokens, dtype_bytes)
    if need <= budget:
        return
    fits = next((b for b in range(batch - 1, 0, -1)
                 if generation_bytes(shapes, b, tokens, dtype_bytes) <= budget), None)
    fix = f"eval.batch_size={fits}" if fits else "a device with more memory, or eval.engine=vllm"
    raise HarnessError(f"eval generation will not fit: batch {batch} × {tokens} tokens needs "
                       f"{gib(need)}, {device} has {gib(device_bytes)} ({headroom:.0%} usable). "
                       f"Fix: {fix}.")


class PeakMemory:
    """The peak memory of the code in a `with` block, above what was in use when it began:
    `torch.cuda.max_memory_allocated` on a GPU (what the plan estimates: tensors, not the CUDA
    context), else the process's peak RSS, reset through /proc/self/clear_refs. On the CPU it
    first makes glibc return freed blocks at once, so RSS follows the live tensors (glibc keeps
    freed heap blocks otherwise: measured up to 2x the tensors' size on a 135M model)."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            _return_freed_memory_at_once()
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.start = _status_bytes("VmRSS")
        return self

    def __exit__(self, *exc_info: object) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.peak = _status_bytes("VmHWM") - self.start


def _return_freed_memory_at_once() -> None:
    """glibc's mallopt(M_MMAP_THRESHOLD, 128 KiB): larger blocks are mmapped and unmapped when
    freed, so RSS follows the live tensors (the same as MALLOC_MMAP_THRESHOLD_=131072)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name).mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def device_memory() -> tuple[str, int]:
    """(name, bytes) of the device training will use: the first CUDA GPU, else the host's
    available RAM (MemAvailable, so other processes' memory is not counted as ours)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.name, int(props.total_memory)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return "cpu (available RAM)", int(line.split()[1]) * 1024
    except OSError:
        pass
    return "cpu (physical RAM)", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check(p: Plan, device: str, device_bytes: int, headroom: float = 0.9) -> None:
    """Refuse a plan larger than `headroom` of the device (the rest is the CUDA context and
    allocator fragmentation), naming the first setting that fits."""
    budget = int(device_bytes * headroom)
    if p.total <= budget:
        return
    fix = describe_fix(p.shapes, p.setup, fitting_setup(p.shapes, p.setup, budget))
    raise HarnessError(
        f"training will not fit: the memory plan needs {gib(p.total)}, {device} has "
        f"{gib(device_bytes)} ({headroom:.0%} usable: {gib(budget)}).\n{p.table()}\n{fix}, or "
        f"train.memory.check=false to try anyway.")


def setup_from_cfg(tcfg: Any, backend: str, checkpointing: bool, dtype_bytes: int) -> Setup:
    """The Setup of the train settings (`cfg.train`) for the chosen backend and device."""
    from omegaconf import OmegaConf

    targets = tcfg.lora.target_modules
    targets = tuple(OmegaConf.to_container(targets)) if OmegaConf.is_list(targets) else (
        LINEAR if str(targets) == "all-linear" else (str(targets),))
    return Setup(method=str(tcfg.method), backend=backend, r=int(tcfg.lora.r), targets=targets,
                 dropout=float(tcfg.lora.dropout), batch_size=int(tcfg.batch_size),
                 seq_len=int(tcfg.max_length), checkpointing=checkpointing, optim=str(tcfg.optim),
                 dtype_bytes=dtype_bytes, double_quant=bool(tcfg.qlora.double_quant),
                 grad_accum=int(tcfg.grad_accum))


def main(argv: list[str] | None = None) -> None:
    """`python -m harness.train.vram CONFIG_JSON [--method ...]`: print a plan from a model's
    config.json (the README's weekend commands were checked this way)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("config", help="a model's config.json")
    ap.add_argument("--method", default="lora", choices=("lora", "qlora"))
    ap.add_argument("--backend", default="hf", choices=("hf", "unsloth"))
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--optim", default="adamw_torch")
    ap.add_argument("--device-gb", type=float, default=24.0)
    ap.add_argument("--headroom", type=float, default=0.9)
    args = ap.parse_args(argv)
    shapes = Shapes.from_config(json.loads(Path(args.config).read_text()))
    s = Setup(method=args.method, backend=args.backend, r=args.r, dropout=args.dropout,
              batch_size=args.batch_size, seq_len=args.max_length,
              checkpointing=not args.no_checkpointing, optim=args.optim)
    p = plan(shapes, s)
    device = int(args.device_gb * GIB)
    print(p.table(f"{args.device_gb:g} GiB", int(device * args.headroom)))
    try:
        check(p, f"a {args.device_gb:g} GiB device", device, args.headroom)
        print("fits")
    except HarnessError as e:
        print(str(e).splitlines()[-1])


if __name__ == "__main__":
    main()
