"""Training backends behind one interface: each loads the base model ready for LoRA and
returns (model, peft_config_or_None); the TRL trainer loop is shared (harness/train/stage.py).

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
    if name == "unsloth" and not (cuda_available() and has_unsloth):
        raise HarnessError(
            "train.backend=unsloth needs a CUDA GPU and the unsloth extra "
            f"(cuda={cuda_available()}, unsloth installed={has_unsloth}). Fix: "
            "pip install 'harness[unsloth]' on a GPU machine, or use train.backend=hf."
        )
    if name not in ("hf", "unsloth"):
        raise HarnessError(f"train.backend={name!r}: expected auto, hf or unsloth.")
    return name


def _check_method(tcfg: DictConfig) -> None:
    if tcfg.method not in ("lora", "qlora"):
        raise HarnessError(f"train.method={tcfg.method!r}: expected lora or qlora.")
    if tcfg.method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise HarnessError("train.method=qlora needs bitsandbytes. Fix: pip install bitsandbytes.")


def load_hf(model_ref: str, cfg: DictConfig) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tcfg = cfg.train
    _check_method(tcfg)
    on_gpu = cuda_available()
    dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": cfg.model.get("revision") or None}
    if tcfg.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(model_ref, **kwargs)
    if tcfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_gpu)
    lora = tcfg.lora
    peft_config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
        target_modules=OmegaConf.to_container(lora.target_modules)
        if OmegaConf.is_list(lora.target_modules) else str(lora.target_modules),
    )
    return model, peft_config


def load_unsloth(model_ref: str, cfg: DictConfig) -> tuple[Any, Any]:
    """FastLanguageModel with the same LoRA settings; returns an already-wrapped PEFT model."""
    from unsloth import FastLanguageModel  # import before transformers work: it patches them

    tcfg = cfg.train
    _check_method(tcfg)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=model_ref, max_seq_length=tcfg.max_length, dtype=None,
        load_in_4bit=tcfg.method == "qlora", revision=cfg.model.get("revision") or None,
    )
    targets = tcfg.lora.target_modules
    model = FastLanguageModel.get_peft_model(
        model, r=tcfg.lora.r, lora_alpha=tcfg.lora.alpha, lora_dropout=tcfg.lora.dropout,
        target_modules=LINEAR_MODULES if targets == "all-linear" else list(targets),
        use_gradient_checkpointing="unsloth", random_state=tcfg.seed,
    )
    return model, None


LOADERS = {"hf": load_hf, "unsloth": load_unsloth}
