"""The formatted dataset leaves in the layouts other trainers read, row for row."""

from __future__ import annotations

import json

import pandas as pd
from datasets import Dataset, load_dataset
from trl.data_utils import is_conversational

from harness.format.portable import write_portable

CHAT = [{"role": "system", "content": "You are a coding assistant."},
        {"role": "user", "content": "Add a retry to fetch()"},
        {"role": "assistant", "content": "def fetch(url, tries=3): ..."}]


def formatted(tmp_path):
    """A format stage's output: tokenized splits with chat rows and code (FIM) rows."""
    fmt = tmp_path / "format"
    train = [{"id": "c1", "kind": "commit", "messages": CHAT, "text": "<rendered chat>",
              "input_ids": [1, 2], "assistant_masks": [0, 1]},
             {"id": "f1", "kind": "code", "messages": [], "text": "<fim_prefix>def f(<fim_suffix>",
              "input_ids": [3], "assistant_masks": [1]}]
    Dataset.from_list(train).save_to_disk(str(fmt / "dataset"))
    Dataset.from_list(train[:1]).save_to_disk(str(fmt / "eval_dataset"))
    return fmt


def test_chat_pairs_go_out_as_openai_messages_and_code_as_text(tmp_path):
    counts = write_portable(formatted(tmp_path), tmp_path / "portable")

    assert counts == {"chat.train": 1, "text.train": 1, "chat.test": 1}
    chat = load_dataset("json", data_files=str(tmp_path / "portable" / "chat.train.jsonl"),
                        split="train")
    assert chat[0]["messages"] == CHAT and is_conversational(chat[0])  # what TRL's SFT reads
    text = [json.loads(line) for line in
            (tmp_path / "portable" / "text.train.jsonl").read_text().splitlines()]
    assert text == [{"id": "f1", "kind": "code", "text": "<fim_prefix>def f(<fim_suffix>"}]
    assert pd.read_parquet(tmp_path / "portable" / "chat.test.parquet")["id"].tolist() == ["c1"]
    assert not (tmp_path / "portable" / "text.test.jsonl").exists()  # no empty files


def test_llamafactory_finds_every_file_in_its_registry(tmp_path):
    write_portable(formatted(tmp_path), tmp_path / "portable")

    info = json.loads((tmp_path / "portable" / "dataset_info.json").read_text())
    assert info["harness_chat.train"]["formatting"] == "sharegpt"
    assert info["harness_chat.train"]["tags"]["role_tag"] == "role"
    assert info["harness_text.train"]["columns"] == {"prompt": "text"}
    assert all((tmp_path / "portable" / d["file_name"]).is_file() for d in info.values())
