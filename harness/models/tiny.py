"""Build a tiny but real code model offline: a BPE tokenizer trained on local Python sources,
a ChatML chat template with `{% generation %}` markers, Qwen-style FIM sentinels, and a small
Llama model with random weights. Tests and the offline demo use it because no hub is reachable.

The result is cached under `<cache_dir>/tiny-model/<key>/`, where the key hashes every setting,
so a second call is a directory lookup.
"""

from __future__ import annotations

import logging
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, built_dir, stable_hash

log = logging.getLogger(__name__)

# Qwen2.5-Coder's special tokens, so configs and FIM formatting are the same for the tiny model
# and the real one.
ENDOFTEXT = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = (
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
)
FILE_SEP, REPO_NAME = "<|file_sep|>", "<|repo_name|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD,
                  FILE_SEP, REPO_NAME]

# ChatML, as Qwen2.5 uses it, plus the `{% generation %}` block TRL needs to build the
# assistant-only loss mask via `return_assistant_tokens_mask`.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

DEFAULTS: dict[str, Any] = {
    "vocab_size": 4096,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "max_position_embeddings": 4096,
    "corpus_max_bytes": 3_000_000,
    "seed": 0,
}


def _corpus(max_bytes: int) -> Iterator[str]:
    """Python sources of the running interpreter's stdlib: always present, no network."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        total += len(text)
        yield text
        if total >= max_bytes:
            return


def _train_tokenizer(settings: dict[str, Any]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(settings["corpus_max_bytes"]), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=settings["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _build_model(settings: dict[str, Any], tokenizer):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(settings["seed"])
    eos = tokenizer.convert_tokens_to_ids([IM_END, ENDOFTEXT])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["num_layers"],
        num_attention_heads=settings["num_heads"],
        num_key_value_heads=settings["num_kv_heads"],
        max_position_embeddings=settings["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def build_tiny_model(cache_dir: str | Path, **overrides: Any) -> Path:
    """Return the directory of a cached tiny model + tokenizer, building it on first use."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        from harness.errors import HarnessError

        raise HarnessError(f"unknown tiny-model settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **overrides}
    key = stable_hash({"settings": settings, "template": CHAT_TEMPLATE, "specials": SPECIAL_TOKENS,
                       "version": 1})[:16]
    target = Path(cache_dir).expanduser().resolve() / "tiny-model" / key
    if (target / "tiny.json").exists():
        return target
    log.info("building tiny model %s (tokenizer trained on stdlib sources)", key)
    with built_dir(target) as tmp:
        tokenizer = _train_tokenizer(settings)
        model = _build_model(settings, tokenizer)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        atomic_write_json(tmp / "tiny.json", {"key": key, "settings": settings})
    log.info("tiny model ready at %s", target)
    return target


def build_from_cfg(cfg) -> str:
    """`harness build-tiny`: the tiny model directory for the configured settings."""
    from omegaconf import OmegaConf

    return str(build_tiny_model(cfg.cache_dir, **OmegaConf.to_container(cfg.model.get("tiny") or {})))
