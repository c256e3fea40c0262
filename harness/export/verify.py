"""Does the exported GGUF still behave like the merged model the gate approved?

Each GGUF is loaded back with transformers (`gguf_file=`, which dequantizes it) and compared
with the merged model on fixed prompts, always with the same inputs, batch and stop tokens:

- tokenization: the GGUF's tokenizer must give the same ids as the merged model's;
- metadata: the special-token ids llama.cpp and Ollama read (eos, chat end, FIM) must be the
  merged tokenizer's ids for the same strings;
- logits and greedy tokens, teacher-forced on the merged model's greedy continuation: the
  largest absolute logit error and the top-1 agreement, plus whether free greedy decoding
  gives the very same tokens.

f16 is a lossless container for the merged weights rounded to f16, so it is compared with
exactly that model and must match it token for token (and is also compared with the merged
model itself, to show what f16 costs); quantized files are compared with the merged model and
held to the configured tolerance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.models.gguf_import import restore_pre_tokenizer

log = logging.getLogger(__name__)
CODE_PROMPTS = (
    "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, path):\n",
    "for (let i = 0; i < items.length; i++) {\n  total += items[i].price * 1.5;  // ünïcode ✓\n",
    "TABLE = [\n        16, 2048,\n\n1. the digits after whitespace\n",  # pre-tokenizer splits
)
CHAT_PROMPT = [{"role": "user", "content": "Write a Python function that reverses a string."}]
FIM_PROMPT = ("def mean(values):\n    total = ", "\n    return total / len(values)\n")


@dataclass
class Prompt:
    name: str
    text: str          # what the tokenizers must agree on
    ids: list[int]     # the merged tokenizer's ids, fed to both models


def fixed_prompts(tokenizer, fim: dict | None) -> list[Prompt]:
    """Code, a chat turn rendered with the template, and a FIM prompt when there are sentinels."""
    texts = [(f"code{i}", t) for i, t in enumerate(CODE_PROMPTS)]
    if tokenizer.chat_template:
        texts.append(("chat", tokenizer.apply_chat_template(CHAT_PROMPT, tokenize=False,
                                                            add_generation_prompt=True)))
    if fim:
        texts.append(("fim", f"{fim['prefix']}{FIM_PROMPT[0]}{fim['suffix']}{FIM_PROMPT[1]}"
                             f"{fim['middle']}"))
    return [Prompt(n, t, tokenizer(t, add_special_tokens=False)["input_ids"]) for n, t in texts]


def control_tokens(path: Path) -> list[str]:
    """The tokens the file marks CONTROL: llama.cpp and Ollama never split these."""
    from gguf import GGUFReader, TokenType

    fields = GGUFReader(str(path)).fields
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    return [bytes(tokens.parts[i]).decode("utf-8") for i, j in zip(tokens.data, types.data, strict=True)
            if int(types.parts[j][0]) == TokenType.CONTROL]


def load_gguf(path: Path, dtype: str = "float32"):
    """(model, tokenizer) as transformers reads the GGUF file, the tokenizer treating the
    file's CONTROL tokens as special, as llama.cpp does (transformers' Qwen2 GGUF reader
    registers only <|endoftext|>, <|im_start|> and <|im_end|>, and would split FIM sentinels)."""
    import torch
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (path.parent / "tokenizer.json").exists() or (path.parent / "tokenizer_config.json").exists():
        raise HarnessError(f"{path.parent} holds Hugging Face tokenizer files, which transformers "
                           f"would read instead of the GGUF's own tokenizer.")
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=getattr(torch, dtype))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    restore_pre_tokenizer(tokenizer, path)  # as llama.cpp splits (e.g. smollm: digits apart)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in control_tokens(path)],
                         special_tokens=True)
    return model, tokenizer


def rounded_to_f16(model):
    """A copy of `model` whose weights went through f16: what an f16 file holds exactly."""
    import copy

    import torch

    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))
    return clone


def greedy(model, prompts: list[list[int]], new_tokens: int, eos: list[int], pad: int) -> list[list[int]]:
    """Greedy continuations, one prompt at a time (no padding, so nothing but the weights
    differs between two models)."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            seq = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=eos, pad_token_id=pad, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            out.append(seq[0, len(ids):].tolist())
    return out


def _logits(model, ids: list[int]):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def compare_models(reference, candidate, prompts: list[list[int]], continuations: list[list[int]],
                   new_tokens: int, eos: list[int], pad: int) -> dict:
    """Logit error and top-1 agreement teacher-forced on `continuations` (the reference's
    greedy tokens), and whether free greedy decoding is identical."""
    max_err, total_err, n_pos, agree = 0.0, 0.0, 0, 0
    for ids, cont in zip(prompts, continuations, strict=True):
        full = ids + cont
        ref, cand = _logits(reference, full), _logits(candidate, full)
        positions = slice(len(ids) - 1, len(full) - 1) if cont else slice(len(ids) - 1, len(ids))
        err = (ref[positions] - cand[positions]).abs()
        max_err = max(max_err, err.max().item())
        total_err += err.mean(dim=-1).sum().item()
        n = err.shape[0]
        n_pos += n
        agree += (ref[positions].argmax(-1) == cand[positions].argmax(-1)).sum().item()
    free = greedy(candidate, prompts, new_tokens, eos, pad)
    identical = [a == b for a, b in zip(free, continuations, strict=True)]
    return {"max_abs_logit_error": max_err, "mean_abs_logit_error": total_err / max(n_pos, 1),
            "top1_agreement": agree / max(n_pos, 1), "positions": n_pos,
            "greedy_identical": sum(identical) / len(identical),
            "greedy_mismatches": [i for i, same in enumerate(identical) if not same]}


def compare_tokenizers(gguf_tokenizer, prompts: list[Prompt]) -> dict:
    mismatches = []
    for p in prompts:
        got = gguf_tokenizer(p.text, add_special_tokens=False)["input_ids"]
        if got != p.ids:
            mismatches.append({"prompt": p.name, "merged": p.ids[:40], "gguf": got[:40]})
    return {"identical": not mismatches, "prompts": len(prompts), "mismatches": mismatches}


def check_metadata(path: Path, expected: dict[str, int]) -> dict:
    """The special-token ids written in the file against the merged tokenizer's."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    found = {}
    for kind in expected:
        key = {"unk": "unknown", "pad": "padding", "sep": "seperator"}.get(kind, kind)
        field = reader.fields.get(f"tokenizer.ggml.{key}_token_id")
        found[kind] = int(field.parts[field.data[0]][0]) if field else None
    wrong = {k: {"expected": v, "found": found[k]} for k, v in expected.items() if found[k] != v}
    return {"special_token_ids": found, "wrong": wrong, "ok": not wrong}


@dataclass
class Reference:
    """A model the exports are compared with, and its greedy continuations of the prompts."""

    model: object
    tokens: list[list[int]]

    @classmethod
    def of(cls, model, prompts: list[Prompt], new_tokens: int, eos: list[int], pad: int) -> Reference:
        return cls(model, greedy(model, [p.ids for p in prompts], new_tokens, eos, pad))


def check_export(path: Path, file_type: str, model, gguf_tok, merged: Reference,
                 merged_f16: Reference | None, prompts: list[Prompt], expected_ids: dict[str, int],
                 settings: dict, eos: list[int], pad: int) -> dict:
    """Every check for one GGUF file (`model`, `gguf_tok`: as loaded from it); `status` is
    pass, outside_tolerance or fail."""
    ids = [p.ids for p in prompts]
    new = int(settings["new_tokens"])
    result = {"tokenization": compare_tokenizers(gguf_tok, prompts),
              "metadata": check_metadata(path, expected_ids),
              "vs_merged": compare_models(merged.model, model, ids, merged.tokens, new, eos, pad)}
    if file_type == "f16":
        result["vs_merged_f16"] = compare_models(merged_f16.model, model, ids, merged_f16.tokens,
                                                 new, eos, pad)
        ok = (result["tokenization"]["identical"] and result["metadata"]["ok"]
              and result["vs_merged_f16"]["greedy_identical"] == 1.0)
        result["status"] = "pass" if ok else "fail"
        result["rule"] = ("tokenization identical, special-token ids right, greedy tokens "
                          "identical to the merged model with f16-rounded weights")
    else:
        tol = dict(settings["tolerance"].get(file_type) or {})
        within = (result["vs_merged"]["top1_agreement"] >= float(tol.get("min_top1_agreement", 0))
                  and result["vs_merged"]["max_abs_logit_error"] <= float(tol.get("max_abs_logit_error", float("inf"))))
        if not (result["tokenization"]["identical"] and result["metadata"]["ok"]):
            result["status"] = "fail"
        else:
            result["status"] = "pass" if within else "outside_tolerance"
        result["tolerance"] = tol
    return result


def require_f16_pass(results: dict[str, dict], path: Path) -> None:
    """Loud failure: an f16 file that does not reproduce the merged model is a broken export."""
    f16 = results.get("f16")
    if f16 and f16["status"] != "pass":
        raise HarnessError(
            f"the f16 GGUF does not round-trip: tokenization identical="
            f"{f16['tokenization']['identical']}, wrong special ids={f16['metadata']['wrong']}, "
            f"greedy identical={f16['vs_merged_f16']['greedy_identical']:.2f}. Details in {path}. "
            f"Nothing was published; this is a converter bug for this model, please report it "
            f"with that file.")
