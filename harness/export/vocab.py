"""The tokenizer as GGUF metadata: vocabulary, token types, BPE merges, the pre-tokenizer name,
special tokens (bos/eos/pad, the chat end token), FIM sentinels and the chat template.

The keys and their meaning follow llama.cpp's converter (convert_hf_to_gguf.py) and its
tokenizer (src/llama-vocab.cpp): byte-level BPE is `tokenizer.ggml.model = "gpt2"`, and the
`pre` name picks the split regex llama.cpp applies before BPE. We read the merges and the
special-token ids with gguf's own `SpecialVocab` rather than parsing tokenizer files ourselves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

# Qwen2's split regex, as its tokenizer.json writes it (llama.cpp's "qwen2" pre-tokenizer).
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Sentinel families by role; llama.cpp reads them from these tokenizer.ggml.fim_* keys.
FIM_ROLES = {"prefix": "fim_pre", "suffix": "fim_suf", "middle": "fim_mid", "pad": "fim_pad",
             "repo": "fim_rep", "file_sep": "fim_sep"}
FIM_EXTRAS = {"pad": ("<|fim_pad|>", "<fim_pad>"), "repo": ("<|repo_name|>", "<reponame>"),
              "file_sep": ("<|file_sep|>", "<file_sep>")}
# Chat end tokens of the usual templates, tried in order when the run does not name one.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
GENERATION_TAGS = re.compile(r"\{%-?\s*(?:generation|endgeneration)\s*-?%\}")


@dataclass
class Vocab:
    """Everything the GGUF file says about the tokenizer."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)   # bos/eos/pad/unk/eot + fim_*
    add_bos: bool = False
    chat_template: str | None = None

    def token(self, kind: str) -> str | None:
        tid = self.special_ids.get(kind)
        return None if tid is None else self.tokens[tid]


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the split the HF tokenizer does before BPE; refuse what we cannot
    name, since a wrong name silently changes every tokenization in llama.cpp and Ollama."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and (steps[0].get("pattern") or {}).get("Regex") == QWEN2_SPLIT:
        return "qwen2"
    raise HarnessError(f"the tokenizer's pre-tokenizer {kinds} has no llama.cpp equivalent we "
                       f"know (gpt-2, smollm, qwen2), so the GGUF would tokenize differently. "
                       f"Fix: export a model with one of those tokenizers, or add its llama.cpp "
                       f"name to harness/export/vocab.py.")


def _token_types(tokenizer_json: dict, n: int, tokens: list[str]) -> list[int]:
    from gguf import TokenType

    types = [int(TokenType.NORMAL)] * n
    for added in tokenizer_json.get("added_tokens") or []:
        types[added["id"]] = int(TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED)
    for i, tok in enumerate(tokens):
        if tok.startswith("[PAD") and i >= len(tokenizer_json["model"]["vocab"]):
            types[i] = int(TokenType.UNUSED)
    return types


def _fim_ids(tokenizer, fim: dict | None) -> dict[str, int]:
    """The run's FIM sentinels (model.fim), or the known families detected in the vocabulary."""
    from harness.format.fim import KNOWN_SENTINELS

    vocab = tokenizer.get_vocab()
    names = None
    if fim and all(fim.get(r) in vocab for r in ("prefix", "suffix", "middle")):
        names = (fim["prefix"], fim["suffix"], fim["middle"])
    else:
        names = next((n for n in KNOWN_SENTINELS.values() if all(t in vocab for t in n)), None)
    if names is None:
        return {}
    ids = {FIM_ROLES[r]: vocab[t] for r, t in zip(("prefix", "suffix", "middle"), names, strict=True)}
    for role, candidates in FIM_EXTRAS.items():
        tid = next((vocab[t] for t in candidates if t in vocab), None)
        if tid is not None:
            ids[FIM_ROLES[role]] = tid
    return ids


def strip_generation_tags(template: str) -> str:
    """TRL's `{% generation %}` markers only build training masks; llama.cpp's Jinja engine does
    not know them, and rendering is the same without them."""
    return GENERATION_TAGS.sub("", template)


def read_vocab(hf_dir: Path, n_vocab: int, fim: dict | None = None,
               end_of_turn: str | None = None) -> Vocab:
    """The tokenizer of the merged model in `hf_dir`, padded to the model's `n_vocab` rows."""
    from gguf import SpecialVocab
    from transformers import AutoTokenizer

    path = hf_dir / "tokenizer.json"
    if not path.exists():
        raise HarnessError(f"{hf_dir} has no tokenizer.json (a fast tokenizer): GGUF export needs "
                           f"its vocabulary and merges. Fix: save the tokenizer with "
                           f"`save_pretrained` from a fast tokenizer.")
    tj = json.loads(path.read_text(encoding="utf-8"))
    model, decoder = tj.get("model") or {}, tj.get("decoder") or {}
    decoders = [d.get("type") for d in decoder.get("decoders", [decoder])]
    # byte_fallback never fires in a byte-level vocabulary (every byte has its own token);
    # transformers sets it on tokenizers it converts from GGUF (the SmolLM2 import)
    if model.get("type") != "BPE" or "ByteLevel" not in decoders:
        raise HarnessError(f"{path}: only byte-level BPE tokenizers (GPT-2 style, as Qwen2.5, "
                           f"SmolLM2 and Llama 3 use) are exported; this one is "
                           f"{model.get('type')} with {decoders} decoders.")
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if len(by_id) > n_vocab:
        raise HarnessError(f"the tokenizer has {len(by_id)} tokens but the model only {n_vocab} "
                           f"embedding rows: they do not belong together.")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]  # llama.cpp pads the same way
    special = SpecialVocab(hf_dir, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise HarnessError(f"{path} has no BPE merges; the GGUF tokenizer could not be rebuilt.")
    ids = dict(special.special_token_ids)
    eot = end_of_turn or next((t for t in END_OF_TURN if t in tokenizer.get_vocab()), None)
    if eot is not None and eot in tokenizer.get_vocab():
        ids["eot"] = tokenizer.get_vocab()[eot]
    ids.update(_fim_ids(tokenizer, fim))
    if "bos" not in ids and "eos" in ids:
        # transformers' GGUF reader fails on a file with an eos id and no bos id; with
        # add_bos_token false the id is never inserted (Qwen2.5's GGUFs name <|endoftext|> too)
        ids["bos"] = tokenizer.get_vocab().get("<|endoftext|>", ids["eos"])
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return Vocab(tokens=tokens, types=_token_types(tj, n_vocab, tokens), merges=special.merges,
                 pre=pre_tokenizer_name(tj), special_ids=ids,
                 add_bos=bool(special.add_special_token.get("bos", False)),
                 chat_template=strip_generation_tags(template) if template else None)


def add_to_writer(writer, vocab: Vocab) -> None:
    """Write the tokenizer keys llama.cpp reads."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    for kind, tid in sorted(vocab.special_ids.items()):
        if kind.startswith("fim_"):  # gguf's writer has no helper for these keys
            writer.add_uint32(f"tokenizer.ggml.{kind}_token_id", tid)
        else:
            getattr(writer, f"add_{kind}_token_id")(tid)
    writer.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
