"""Training backends behind one interface: `LOADERS[name](model_ref, tcfg, model_cfg)` (the
train and model settings) loads the base model ready for LoRA and returns
(model, peft_config_or_None); the TRL trainer loop is shared (harness/train/stage.py), so one
Hydra config drives both.

- `hf`: transformers + PEFT (+ bitsandbytes NF4 for QLoRA). Runs everywhere, CPU included.
- `unsloth`: Unsloth's FastLanguageModel (fused kernels, its own gradient checkpointing) and
  its patched trainer. Needs CUDA and the `unsloth` extra; `auto` picks it only then. Nothing
  on the default import path imports unsloth: only `import_unsloth_first` does, before
  transformers, TRL and PEFT (the preflight calls it first thing when the backend is unsloth).

Unsloth usage follows unslothai/unsloth (2026.x): unsloth/_gpu_init.py (import order),
unsloth/models/loader.py (`FastLanguageModel.from_pretrained`, its repo mapper and
`use_exact_model_name`), unsloth/models/llama.py (`get_peft_model`'s fast path), and
unsloth/trainer.py (`UnslothTrainer`, an `SFTTrainer` subclass).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError

log = logging.getLogger(__name__)

# What `all-linear` means for Llama/Qwen/Mistral-style blocks; Unsloth needs explicit names.
LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def select_backend(name: str) -> str:
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if name == "auto":
        return "unsloth" if cuda_available() and has_unsloth else "hf"
    if name not in ("hf", "unsloth"):
        raise HarnessError(f"train.backend={name!r}: expected auto, hf or unsloth.")
    if name == "unsloth" and not (cuda_available() and has_unsloth):
        raise HarnessError(
            "train.backend=unsloth needs a CUDA GPU and the unsloth extra "
            f"(cuda={cuda_available()}, unsloth installed={has_unsloth}). Fix: "
            "pip install 'harness[unsloth]' on a GPU machine, or use train.backend=hf."
        )
    return name


def compute_dtype():
    """bf16 on GPUs that have it, else fp32 (bf16 autocast on CPU is ~1.6× slower)."""
    import torch

    return torch.bfloat16 if cuda_available() and torch.cuda.is_bf16_supported() else torch.float32


def gradient_checkpointing(tcfg: DictConfig) -> bool:
    """`train.gradient_checkpointing`; null means on for GPUs (memory) and off on CPU (speed)."""
    gc = tcfg.get("gradient_checkpointing")
    return cuda_available() if gc is None else bool(gc)


def _targets(lora: DictConfig) -> str | list[str]:
    t = lora.target_modules
    return OmegaConf.to_container(t) if OmegaConf.is_list(t) else str(t)


def _avoid_cpu_packing_bug(model) -> None:
    """bitsandbytes 0.50 repacks NF4 weights for its AVX512-BF16 CPU kernel in eval mode and
    fails unless a layer's output size is a multiple of 32 and its input size a multiple of the
    quantization block; layers that are not (the tiny model's MLP) keep the generic kernel, so
    evaluation works on any shape."""
    import bitsandbytes as bnb

    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit) and (
                m.out_features % 32 or m.in_features % m.weight.quant_state.blocksize):
            m.support_avx512bf16_for_cpu = False


def hf_placement(cuda: bool, local_rank: int = 0) -> dict:
    """Where `from_pretrained` puts the weights: on a GPU, this process's device. The Trainer
    moves other models itself but never a bitsandbytes-quantized one (transformers' trainer.py:
    "Bnb Quantized models don't support `.to` operation"), so without this QLoRA would stay
    on the CPU."""
    return {"device_map": {"": local_rank}} if cuda else {}


def load_hf(model_ref: str, tcfg: DictConfig, model_cfg: DictConfig) -> tuple[Any, Any]:
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = compute_dtype()
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": model_cfg.get("revision") or None}
    if tcfg.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=tcfg.qlora.quant_type,
            bnb_4bit_use_double_quant=tcfg.qlora.double_quant, bnb_4bit_compute_dtype=dtype,
        )
    if tcfg.method == "qlora":
        kwargs.update(hf_placement(cuda_available(), int(os.environ.get("LOCAL_RANK", "0"))))
    model = AutoModelForCausalLM.from_pretrained(model_ref, **kwargs)
    if tcfg.method == "qlora":
        _avoid_cpu_packing_bug(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing(tcfg))
    lora = tcfg.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             task_type="CAUSAL_LM", target_modules=_targets(lora))
    return model, peft_config


def import_unsloth_first() -> None:
    """`import unsloth` before transformers, TRL and PEFT: it patches them when imported and
    warns that its optimizations may not apply if they came first (unsloth/_gpu_init.py:
    "Unsloth should be imported before [...]", critical_modules = trl, transformers, peft)."""
    if "unsloth" in sys.modules:
        return
    early = [m for m in ("transformers", "trl", "peft") if m in sys.modules]
    if early:
        log.warning("unsloth is imported after %s, so its patches may not apply. Fix: start "
                    "the training from `harness train` / `harness run`, whose preflight "
                    "imports unsloth first.", early)
    importlib.import_module("unsloth")


def unsloth_lora_kwargs(tcfg: DictConfig) -> dict:
    """`FastLanguageModel.get_peft_model` arguments. Its fast path (fused LoRA MLP/QKV/O
    kernels) applies only with lora_dropout == 0 and bias == "none"; otherwise it warns and
    patches everything but the LoRA matrices (unsloth/models/llama.py, get_peft_model and
    patch_peft_model), so the unsloth preset (conf/train/unsloth.yaml) sets dropout 0."""
    targets = _targets(tcfg.lora)
    bias = str(tcfg.lora.get("bias") or "none")
    if float(tcfg.lora.dropout) != 0 or bias != "none":
        log.warning("train.lora.dropout=%s, bias=%s: Unsloth's fast LoRA kernels need dropout 0 "
                    "and bias none. Fix: train=unsloth (its preset), or train.lora.dropout=0.",
                    tcfg.lora.dropout, bias)
    return {"r": tcfg.lora.r, "lora_alpha": tcfg.lora.alpha, "lora_dropout": tcfg.lora.dropout,
            "bias": bias,
            "target_modules": LINEAR_MODULES if targets == "all-linear" else targets,
            # "unsloth": its offloaded checkpointing (unsloth/models/llama.py's default)
            "use_gradient_checkpointing": "unsloth" if gradient_checkpointing(tcfg) else False,
            "random_state": tcfg.seed}


def load_unsloth(model_ref: str, tcfg: DictConfig, model_cfg: DictConfig) -> tuple[Any, Any]:
    """FastLanguageModel with the same LoRA settings; returns an already-wrapped PEFT model."""
    import_unsloth_first()
    from unsloth import FastLanguageModel

    revision = model_cfg.get("revision") or None
    model, _ = FastLanguageModel.from_pretrained(
        model_name=model_ref, max_seq_length=tcfg.max_length, dtype=None,
        # Unsloth's default is load_in_4bit=True: say which, always.
        load_in_4bit=tcfg.method == "qlora", load_in_8bit=False, full_finetuning=False,
        revision=revision,
        # Unsloth maps hub ids to its own copies (e.g. unsloth/...-bnb-4bit) and then drops
        # the pinned revision (loader.py, _revision_for_resolved_repo); a pin means this repo.
        use_exact_model_name=revision is not None,
    )
    model = FastLanguageModel.get_peft_model(model, **unsloth_lora_kwargs(tcfg))
    loaded = loaded_base(model)
    if loaded["loaded_repo"] not in (None, model_ref):
        log.warning("Unsloth loaded %s for %s (its pre-quantized copy); the manifest records "
                    "both. Pin model.revision to load the requested repo as-is.",
                    loaded["loaded_repo"], model_ref)
    return model, None


def loaded_base(model) -> dict:
    """What was actually loaded (the repo or directory and its commit), which can differ from
    what was asked for when Unsloth substitutes its own copy of a model."""
    config = getattr(model, "config", None)
    return {"loaded_repo": getattr(config, "_name_or_path", None) or None,
            "loaded_commit": getattr(config, "_commit_hash", None)}


def trainer_class(backend: str):
    """TRL's SFTTrainer, or for unsloth its `UnslothTrainer` (an SFTTrainer subclass with its
    optimizer grouping), imported after unsloth has patched TRL (unsloth/trainer.py)."""
    if backend == "unsloth":
        import_unsloth_first()
        from unsloth import UnslothTrainer

        return UnslothTrainer
    from trl import SFTTrainer

    return SFTTrainer


LOADERS = {"hf": load_hf, "unsloth": load_unsloth}
