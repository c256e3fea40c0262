"""The formatted dataset in the files other trainers read, beside the tokenized copy we train on.

A team may want to train elsewhere (TRL, Axolotl, LLaMA-Factory) on exactly the pairs the
harness mined, filtered, deduplicated, redacted and split. Chat pairs go out in the OpenAI
`messages` layout all three read; code examples (fill-in-the-middle or left-to-right, already
rendered with the model's own FIM tokens) go out as raw `text`, the completion/pretraining
layout. Each split is written as JSONL and Parquet, with a LLaMA-Factory `dataset_info.json`
naming them, so the directory can be used as LLaMA-Factory's `dataset_dir` as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset, load_from_disk

from harness.io import atomic_write_json, atomic_write_text
from harness.rundir import DATASET, EVAL_DATASET

SPLITS = {"train": DATASET, "test": EVAL_DATASET}  # portable split name → format/ subdir


def _chat(rows: Dataset) -> list[dict]:
    return [{"id": r["id"], "kind": r["kind"], "messages": r["messages"]}
            for r in rows if r["messages"]]


def _text(rows: Dataset) -> list[dict]:
    return [{"id": r["id"], "kind": r["kind"], "text": r["text"]} for r in rows if not r["messages"]]


def _llamafactory_info(files: dict[str, str]) -> dict:
    """LLaMA-Factory's registry: chat files as sharegpt with OpenAI role/content tags, text files
    as its pretraining layout (column `prompt` ← `text`)."""
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
            "assistant_tag": "assistant", "system_tag": "system"}
    info = {}
    for name, file in files.items():
        if name.startswith("chat"):
            info[f"harness_{name}"] = {"file_name": file, "formatting": "sharegpt",
                                       "columns": {"messages": "messages"}, "tags": tags}
        else:
            info[f"harness_{name}"] = {"file_name": file, "columns": {"prompt": "text"}}
    return info


def write_portable(format_dir: Path, out: Path) -> dict[str, int]:
    """`format_dir`'s tokenized splits → `out/{chat,text}.{train,test}.{jsonl,parquet}` and
    `dataset_info.json`; returns the row count per file stem. Empty files are not written."""
    out.mkdir(parents=True, exist_ok=True)
    counts, files = {}, {}
    for split, subdir in SPLITS.items():
        if not (format_dir / subdir).is_dir():
            continue
        rows = load_from_disk(str(format_dir / subdir)).select_columns(
            ["id", "kind", "messages", "text"])
        for layout, pick in (("chat", _chat), ("text", _text)):
            picked = pick(rows)
            if not picked:
                continue
            stem = f"{layout}.{split}"
            atomic_write_text(out / f"{stem}.jsonl",
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked))
            Dataset.from_list(picked).to_parquet(str(out / f"{stem}.parquet"))
            counts[stem], files[stem] = len(picked), f"{stem}.jsonl"
    atomic_write_json(out / "dataset_info.json", _llamafactory_info(files))
    return counts
