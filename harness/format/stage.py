"""The format stage: records.jsonl → a tokenized HF dataset + `dataset_card.json`.

Chat pairs (train split) go through the target tokenizer's `apply_chat_template` with the
assistant mask; FIM examples are cut from train-split source files on line boundaries and
formatted with the model's own sentinel tokens. Both end up as `input_ids` + `assistant_masks`
(1 = supervised), which TRL's SFTTrainer turns into labels, so the trainer never re-renders
text and what we checked here is exactly what is trained on.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.format.chat import check_template, to_messages, tokenize_chat
from harness.format.fim import fim_tokens, sample_holes, tokenize_fim
from harness.io import atomic_write_json, read_jsonl, sha256_text, stable_hash, write_jsonl
from harness.models.load import load_tokenizer, resolve_model_path
from harness.stages import require_output

log = logging.getLogger(__name__)


def tokenizer_hash(tokenizer) -> str:
    return stable_hash({"vocab": sorted(tokenizer.get_vocab().items()),
                        "special": tokenizer.all_special_tokens,
                        "template": tokenizer.chat_template})


def _histogram(lengths: list[int], max_length: int, bins: int = 8) -> list[dict]:
    width = max(1, -(-max_length // bins))
    hist = Counter(min(n // width, bins - 1) for n in lengths)
    return [{"from": i * width, "to": (i + 1) * width - 1, "count": hist.get(i, 0)}
            for i in range(bins)]


def run(cfg: DictConfig, out: Path) -> dict:
    from datasets import Dataset

    fcfg = cfg.data.format
    records = list(read_jsonl(require_output(cfg, "mine") / "records.jsonl"))
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, cfg.cache_dir), cfg.model)
    if not tokenizer.chat_template:
        raise HarnessError(
            "the tokenizer has no chat template and none is configured. Fix: set "
            "model.chat_template to the template the model is served with."
        )
    toks = fim_tokens(tokenizer, cfg.model.fim)
    rows, dropped = [], Counter()

    chats = [r for r in records if r["kind"] != "fim_source" and r["split"] == "train"]
    messages = [to_messages(r, fcfg.system_prompt) for r in chats]
    checked = check_template(tokenizer, messages[:32])
    for r, msgs in zip(chats, messages, strict=True):
        ex = tokenize_chat(tokenizer, msgs, fcfg.max_length)
        if ex is None:
            dropped["chat_no_supervised_tokens_after_truncation"] += 1
            continue
        rows.append({"id": r["id"], "kind": r["kind"], "messages": msgs,
                     "text": tokenizer.decode(ex["input_ids"]), **ex})

    for r in (r for r in records if r["kind"] == "fim_source" and r["split"] == "train"):
        rng = random.Random(f"{fcfg.seed}:{r['path']}")
        for hole in sample_holes(r["content"], rng, fcfg.fim_examples_per_file,
                                 fcfg.fim_max_middle_lines, fcfg.fim_context_lines):
            ex = tokenize_fim(tokenizer, toks, hole, fcfg.max_length)
            if ex is None:
                dropped["fim_middle_too_long"] += 1
                continue
            rows.append({"id": f"{r['id']}:{hole.line}", "kind": "fim", "messages": [],
                         "text": tokenizer.decode(ex["input_ids"]), **ex})

    if not rows:
        raise HarnessError(
            f"no training examples after formatting ({len(records)} records, dropped "
            f"{dict(dropped)}). Fix: mine more history or raise data.format.max_length."
        )
    if dropped:
        log.warning("dropped while formatting: %s", dict(dropped))
    rows.sort(key=lambda r: r["id"])
    Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
    write_jsonl(out / "preview.jsonl", [{k: r[k] for k in ("id", "kind", "text")} for r in rows[:20]])
    lengths = [len(r["input_ids"]) for r in rows]
    card = {
        "content_hash": stable_hash([[r["input_ids"], r["assistant_masks"]] for r in rows]),
        "examples": dict(Counter(r["kind"] for r in rows)),
        "dropped": dict(dropped),
        "tokens": sum(lengths),
        "supervised_tokens": sum(sum(r["assistant_masks"]) for r in rows),
        "max_length": fcfg.max_length,
        "length_histogram": _histogram(lengths, fcfg.max_length),
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "template_hash": sha256_text(tokenizer.chat_template),
        "template_checked_examples": checked,
        "fim_token_ids": vars(toks),
    }
    atomic_write_json(out / "dataset_card.json", card)
    log.info("formatted %d examples (%s), %d tokens", len(rows), card["examples"], card["tokens"])
    return card
