"""Mined records → tokenized examples (`input_ids` + `assistant_masks`, 1 = supervised).

- chat: every record with an instruction and a response (commits, PRs, review fixes…), through
  the tokenizer's chat template (harness/format/chat.py);
- source files: windows around holes on line or AST boundaries; with probability `fim_rate` a
  FIM example (SPM order with probability `fim_spm_rate`, else PSM), otherwise a left-to-right
  code example (the Personal Copilot recipe, 0.5 / 0.5);
- `mix`: subsamples whichever side is in excess so source examples make up `code_share`.

Every example dropped is counted by reason in `dropped`; nothing disappears silently.
"""

from __future__ import annotations

import random
from collections import Counter

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.format.chat import end_of_turn_id, to_messages, tokenize_chat
from harness.format.fim import FimTokens, sample_holes, tokenize_code, tokenize_fim
from harness.format.spans import sample_ast_holes

SOURCE_KIND = "fim_source"


def chat_examples(records: list[dict], tokenizer, fcfg: DictConfig, dropped: Counter,
                  shortest: Counter) -> list[dict]:
    """Chat examples; `shortest["chat_prompt"]` gets the shortest prompt that did not fit."""
    rows, eot = [], None
    for r in records:
        msgs = to_messages(r, fcfg.system_prompt)
        try:
            eot = end_of_turn_id(tokenizer, msgs) if eot is None else eot
            ex = tokenize_chat(tokenizer, msgs, fcfg.max_length, eot)
        except HarnessError as e:
            raise HarnessError(f"record {r['id']}: {e}") from e
        if ex is None:
            dropped["chat_no_supervised_tokens_after_truncation"] += 1
            prompt = len(tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True,
                                                       tokenize=True, return_dict=True)["input_ids"])
            shortest["chat_prompt"] = min(shortest.get("chat_prompt", prompt), prompt)
            continue
        rows.append({"id": r["id"], "kind": r["kind"], "messages": msgs,
                     "text": tokenizer.decode(ex["input_ids"]), **ex})
    return rows


def _holes(record: dict, rng: random.Random, fcfg: DictConfig, counts: Counter):
    args = (fcfg.fim_examples_per_file, fcfg.fim_max_middle_lines, fcfg.fim_context_lines)
    if fcfg.fim_span == "ast" and record["path"].endswith(".py"):
        holes = sample_ast_holes(record["content"], rng, *args)
        if holes is not None:
            return holes
        counts["ast_unparsable_files_line_spans"] += 1
    return sample_holes(record["content"], rng, *args)


def source_examples(records: list[dict], tokenizer, toks: FimTokens | None, fcfg: DictConfig,
                    dropped: Counter, counts: Counter) -> list[dict]:
    """FIM (PSM/SPM) and left-to-right examples cut from source files, seeded per file."""
    if fcfg.fim_span not in ("line", "ast"):
        raise HarnessError(f"data.format.fim_span={fcfg.fim_span!r}: expected line or ast.")
    rows = []
    for r in records:
        rng = random.Random(f"{fcfg.seed}:{r['path']}")
        for i, hole in enumerate(_holes(r, rng, fcfg, counts)):
            if toks is not None and rng.random() < fcfg.fim_rate:
                kind = "fim_spm" if rng.random() < fcfg.fim_spm_rate else "fim_psm"
                ex = tokenize_fim(tokenizer, toks, hole, fcfg.max_length, spm=kind == "fim_spm")
            else:
                kind, ex = "code", tokenize_code(tokenizer, hole, fcfg.max_length)
            if ex is None:
                dropped[f"{kind}_does_not_fit_max_length" if kind != "code" else "code_empty"] += 1
                continue
            rows.append({"id": f"{r['id']}:{hole.line}:{i}", "kind": kind, "messages": [],
                         "text": tokenizer.decode(ex["input_ids"]), **ex})
    return rows


def mix(chat: list[dict], code: list[dict], code_share: float | None, seed: int,
        dropped: Counter) -> list[dict]:
    """Subsample the side in excess so that `code_share` of the examples are source examples;
    `None` keeps everything. A side that is empty is kept as is (there is nothing to mix)."""
    if code_share is not None and not 0 < code_share < 1:
        raise HarnessError(f"data.format.code_share={code_share}: expected a value in (0, 1) or null.")
    if code_share is None or not chat or not code:
        return chat + code
    rng = random.Random(f"{seed}:mix")
    want_code = round(len(chat) * code_share / (1 - code_share))
    if want_code < len(code):
        dropped["mix_code_subsampled"] += len(code) - max(want_code, 1)
        code = rng.sample(code, max(want_code, 1))
    else:
        want_chat = max(1, round(len(code) * (1 - code_share) / code_share))
        if want_chat < len(chat):
            dropped["mix_chat_subsampled"] += len(chat) - want_chat
            chat = rng.sample(chat, want_chat)
    return chat + code
