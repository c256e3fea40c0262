"""The format stage: records.jsonl → tokenized HF datasets + `dataset_card.json`.

`dataset/` holds the training examples (train split, mixed at `code_share`), `eval_dataset/`
held-out examples built the same way from the test split (the trainer's eval loss, which ranks
sweep runs). Both carry `input_ids` + `assistant_masks` (1 = supervised), which TRL's
SFTTrainer turns into labels, so the trainer never re-renders text and what was proven here
(chat ids == inference ids) is exactly what is trained on.

The stage runner keys the output by `fingerprint_inputs` (records, tokenizer and template
content, this module's version) plus the config, so a rerun with the same inputs restores it.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.format.card import describe, template_hash, tokenizer_hash
from harness.format.chat import end_of_turn_id, to_messages
from harness.format.examples import SOURCE_KIND, chat_examples, mix, source_examples
from harness.format.fim import fim_tokens, is_left_to_right
from harness.format.portable import write_portable
from harness.io import atomic_write_json, read_jsonl, sha256_file, write_jsonl
from harness.models.load import check_causal_lm, load_tokenizer, resolve_model_path
from harness.rundir import DATASET, DATASET_CARD, EVAL_DATASET, PORTABLE, PREVIEW, RECORDS
from harness.stages import require_output

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # bump when the formatting code changes what it writes


def _tokenizer(model_cfg: DictConfig, cache_dir: str | Path):
    model_ref = resolve_model_path(model_cfg, cache_dir)
    check_causal_lm(model_ref, model_cfg)
    return load_tokenizer(model_ref, model_cfg)


def fingerprint_inputs(cfg: DictConfig) -> dict:
    tokenizer = _tokenizer(cfg.model, cfg.cache_dir)
    return {"records": sha256_file(require_output(cfg, "mine") / RECORDS),
            "tokenizer": tokenizer_hash(tokenizer), "template": template_hash(tokenizer),
            "version": FORMAT_VERSION}


def _examples(records: list[dict], tokenizer, toks, fcfg: DictConfig, dropped: Counter,
              shortest: Counter, counts: Counter) -> tuple[list[dict], list[dict]]:
    chats = [r for r in records if r["kind"] != SOURCE_KIND]
    sources = [r for r in records if r["kind"] == SOURCE_KIND]
    return (chat_examples(chats, tokenizer, fcfg, dropped, shortest),
            source_examples(sources, tokenizer, toks, fcfg, dropped, counts))


def _check_not_empty(records: list[dict], train: list[dict], chat: list[dict], code: list[dict],
                     dropped: Counter, shortest: Counter, max_length: int) -> None:
    """Refuse an empty dataset, or one side of the mix lost entirely to `max_length`."""
    if not train:
        raise HarnessError(
            f"no training examples: the mine stage kept {len(records)} records and none is in the "
            "train split. Fix: mine more history (data.repo, data.mine filters) or lower "
            "data.mine.test_fraction."
        )
    kinds = {r["kind"] == SOURCE_KIND for r in train}
    for name, had, rows in (("chat", False in kinds, chat), ("source-file", True in kinds, code)):
        if had and not rows:  # every example of that side was dropped for its length
            needs = (f" (the shortest chat prompt is {shortest['chat_prompt']} tokens)"
                     if name == "chat" and shortest else "")
            raise HarnessError(
                f"data.format.max_length={max_length} is shorter than every {name} example{needs}: "
                f"all were dropped ({dict(dropped)}). Fix: raise data.format.max_length, or "
                "shorten data.format.system_prompt."
            )


def run(cfg: DictConfig, out: Path) -> dict:
    from datasets import Dataset

    fcfg = cfg.data.format
    records = list(read_jsonl(require_output(cfg, "mine") / RECORDS))
    train = [r for r in records if r["split"] == "train"]
    tokenizer = _tokenizer(cfg.model, cfg.cache_dir)
    has_chat = any(r["kind"] != SOURCE_KIND for r in records)
    if has_chat and not tokenizer.chat_template:
        raise HarnessError(
            "the tokenizer has no chat template and none is configured. Fix: set "
            "model.chat_template to the template the model is served with (a base model needs "
            "one, e.g. ChatML as in conf/model/qwen2.5-coder-1.5b-base.yaml)."
        )
    has_source = any(r["kind"] == SOURCE_KIND for r in records)
    left_to_right = is_left_to_right(cfg.model.get("fim"))
    if left_to_right and has_source and fcfg.fim_rate > 0:
        log.info("model.fim=left_to_right: the model has no FIM sentinels, so every source "
                 "example trains left to right (data.format.fim_rate=%s not applied)", fcfg.fim_rate)
    toks = (fim_tokens(tokenizer, cfg.model.get("fim"))
            if has_source and fcfg.fim_rate > 0 and not left_to_right else None)

    dropped, shortest, counts = Counter(), Counter(), Counter()
    chat, code = _examples(train, tokenizer, toks, fcfg, dropped, shortest, counts)
    _check_not_empty(records, train, chat, code, dropped, shortest, fcfg.max_length)
    rows = sorted(mix(chat, code, fcfg.code_share, fcfg.seed, dropped), key=lambda r: r["id"])
    if dropped:
        log.warning("dropped while formatting (examples with nothing left to supervise, or "
                    "subsampled to code_share=%s): %s", fcfg.code_share, dict(dropped))

    held_dropped = Counter()
    held = [r for r in records if r["split"] == "test"]
    held_chat, held_code = _examples(held, tokenizer, toks, fcfg, held_dropped, Counter(), Counter())
    held_rows = held_chat + held_code
    if len(held_rows) > fcfg.eval_examples:
        held_rows = random.Random(f"{fcfg.seed}:eval").sample(held_rows, fcfg.eval_examples)
    held_rows.sort(key=lambda r: r["id"])

    Dataset.from_list(rows).save_to_disk(str(out / DATASET))
    if held_rows:
        Dataset.from_list(held_rows).save_to_disk(str(out / EVAL_DATASET))
    write_jsonl(out / PREVIEW, [{k: r[k] for k in ("id", "kind", "text")} for r in rows[:20]])
    configured = bool(cfg.model.get("chat_template"))
    first_chat = next((r for r in train if r["kind"] != SOURCE_KIND), None)
    eot = end_of_turn_id(tokenizer, to_messages(first_chat, fcfg.system_prompt)) if first_chat else None
    card = {
        **describe(rows, fcfg.max_length),
        "dropped": dict(dropped),
        "counts": dict(counts),
        "max_length": fcfg.max_length,
        "fim_mode": "left_to_right" if left_to_right else "sentinels",
        "mix": {"code_share": fcfg.code_share, "fim_rate": 0 if left_to_right else fcfg.fim_rate,
                "fim_spm_rate": fcfg.fim_spm_rate, "fim_span": fcfg.fim_span},
        "eval": ({**describe(held_rows, fcfg.max_length), "dropped": dict(held_dropped)}
                 if held_rows else None),
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "template_hash": template_hash(tokenizer),
        "chat_template": {"source": "configured" if configured else "tokenizer",
                          "text": tokenizer.chat_template,
                          "end_of_turn": tokenizer.convert_ids_to_tokens(eot) if eot is not None else None},
        "template_checked_examples": sum(r["kind"] != SOURCE_KIND for r in train + held),
        "fim_token_ids": vars(toks) if toks else None,
        "portable": write_portable(out, out / PORTABLE),
    }
    atomic_write_json(out / DATASET_CARD, card)
    log.info("formatted %d examples (%s), %d tokens; %d held-out examples → %s", len(rows),
             card["examples"], card["tokens"], len(held_rows), out)
    return card
