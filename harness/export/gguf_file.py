"""Write a merged Hugging Face model directory as one GGUF file (llama.cpp, Ollama, LM Studio).

Tensor names come from gguf's own `TensorNameMap` (the table llama.cpp's converter uses);
hyperparameter keys and the Llama Q/K row permutation follow llama.cpp's convert_hf_to_gguf.py.
The file is streamed tensor by tensor (header and tensor infos first), so memory holds one
tensor at a time, and written under a temporary name that is renamed into place at the end.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.export import quant
from harness.export.vocab import Vocab, add_to_writer
from harness.io import sha256_file

log = logging.getLogger(__name__)
# HF architecture -> (gguf MODEL_ARCH member, Q/K rows permuted for llama.cpp's RoPE layout)
ARCHITECTURES = {"LlamaForCausalLM": ("LLAMA", True), "Qwen2ForCausalLM": ("QWEN2", False)}


def architecture(config: dict) -> tuple[str, bool]:
    arch = next((a for a in config.get("architectures") or [] if a in ARCHITECTURES), None)
    if arch is None:
        raise HarnessError(f"GGUF export supports {sorted(ARCHITECTURES)}; this model is "
                           f"{config.get('architectures')}. Fix: export a Llama- or "
                           f"Qwen2-architecture model, or serve the merged HF directory with vLLM.")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise HarnessError(f"rope scaling {rope.get('rope_type') or rope.get('type')!r} is not "
                           f"exported yet (llama.cpp needs its own keys for it).")
    return ARCHITECTURES[arch]


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF stores Q/K rows with the two rotary halves split; llama.cpp's Llama expects them
    interleaved (transformers undoes exactly this when it reads GGUF)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(hf_dir: Path):
    """(name, shape, loader) for every tensor of the safetensors checkpoint, in file order."""
    from safetensors import safe_open

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise HarnessError(f"{hf_dir} has no .safetensors weights. Fix: save the merged model "
                           f"with save_pretrained (safetensors is its default).")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            shapes = {name: tuple(st.get_slice(name).get_shape()) for name in st.keys()}  # noqa: SIM118 (not a dict)
        for name, shape in shapes.items():
            def load(f=f, name=name) -> np.ndarray:
                with safe_open(str(f), framework="pt") as st:
                    return st.get_tensor(name).float().numpy()
            yield name, shape, load


def _hyperparameters(writer, config: dict, n_vocab: int, file_type: str) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(quant.file_type(file_type))
    if file_type not in ("f16", "f32"):
        from gguf import GGML_QUANT_VERSION

        writer.add_quantization_version(GGML_QUANT_VERSION)


def write_gguf(hf_dir: Path, out: Path, file_type: str, vocab: Vocab, name: str) -> dict:
    """Write `out` from the merged model in `hf_dir`; returns what was written (types per
    tensor, fallbacks, size, sha256)."""
    import gguf
    from gguf.quants import quant_shape_to_byte_shape

    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    arch_name, permute = architecture(config)
    arch = gguf.MODEL_ARCH[arch_name]
    n_layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    names = gguf.get_tensor_name_map(arch, n_layers)
    tied = bool(config.get("tie_word_embeddings"))

    planned = []  # (gguf name, loader, transform, shape, plan)
    for hf_name, shape, load in _tensors(hf_dir):
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise HarnessError(f"{hf_dir}: tensor {hf_name} has no GGUF name for "
                               f"{arch_name.lower()}; the export would be incomplete.")
        transform = None
        if permute and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            transform = (heads, heads if "q_proj" in hf_name else kv_heads)
        planned.append((target, load, transform, shape, quant.plan(shape, file_type)))

    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    _hyperparameters(writer, config, len(vocab.tokens), file_type)
    add_to_writer(writer, vocab)
    for target, _, _, shape, p in planned:
        if p.qtype in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32):
            dtype = np.float16 if p.qtype == gguf.GGMLQuantizationType.F16 else np.float32
            writer.add_tensor_info(target, shape, np.dtype(dtype), quant.nbytes(shape, p.qtype))
        else:
            writer.add_tensor_info(target, quant_shape_to_byte_shape(shape, p.qtype),
                                   np.dtype(np.uint8), quant.nbytes(shape, p.qtype), raw_dtype=p.qtype)

    partial = out.with_name(f".{out.name}.partial")
    try:
        writer.write_header_to_file(partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _target, load, transform, _shape, p in planned:
            data = load()
            if transform:
                data = permute_qk(data, *transform)
            writer.write_tensor_data(quant.convert(data, p.qtype))
        writer.close()
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    counts = Counter(p.qtype.name for *_, p in planned)
    fallbacks = [{"tensor": t, "type": p.qtype.name, "why": p.fallback}
                 for t, _, _, _, p in planned if p.fallback]
    log.info("wrote %s (%s): %s", out, file_type, dict(counts))
    return {"file": out.name, "type": file_type, "bytes": out.stat().st_size,
            "sha256": sha256_file(out), "tensors": len(planned), "tensor_types": dict(counts),
            "fallbacks": fallbacks}

