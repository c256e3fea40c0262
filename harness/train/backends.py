"""Training backends behind one interface: `LOADERS[name](model_ref, cfg)` loads the base model
ready for LoRA and returns (model, peft_config_or_None); the TRL trainer loop is shared
(harness/train/stage.py), so one Hydra config drives both.

- `hf`: transformers + PEFT (+ bitsandbytes NF4 for QLoRA). Runs everywhere, CPU included.
- `unsloth`: Unsloth's FastLanguageModel (fused kernels, its own gradient checkpointing).
  Needs CUDA and the `unsloth` extra; `auto` picks it only then.
"""

from __future__ import annotations

import importlib.util
import logging
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


def load_hf(model_ref: str, cfg: DictConfig) -> tuple[Any, Any]:
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tcfg = cfg.train
    dtype = compute_dtype()
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": cfg.model.get("revision") or None}
    if tcfg.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=tcfg.qlora.quant_type,
            bnb_4bit_use_double_quant=tcfg.qlora.double_quant, bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(model_ref, **kwargs)
    if tcfg.method == "qlora":
        _avoid_cpu_packing_bug(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing(tcfg))
    lora = tcfg.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             task_type="CAUSAL_LM", target_modules=_targets(lora))
    return model, peft_config


def load_unsloth(model_ref: str, cfg: DictConfig) -> tuple[Any, Any]:
    """FastLanguageModel with the same LoRA settings; returns an already-wrapped PEFT model."""
    from unsloth import FastLanguageModel  # import before transformers work: it patches them

    tcfg = cfg.train
    model, _ = FastLanguageModel.from_pretrained(
        model_name=model_ref, max_seq_length=tcfg.max_length, dtype=None,
        load_in_4bit=tcfg.method == "qlora", revision=cfg.model.get("revision") or None,
    )
    targets = _targets(tcfg.lora)
    model = FastLanguageModel.get_peft_model(
        model, r=tcfg.lora.r, lora_alpha=tcfg.lora.alpha, lora_dropout=tcfg.lora.dropout,
        target_modules=LINEAR_MODULES if targets == "all-linear" else targets,
        use_gradient_checkpointing="unsloth" if gradient_checkpointing(tcfg) else False,
        random_state=tcfg.seed,
    )
    return model, None


LOADERS = {"hf": load_hf, "unsloth": load_unsloth}
