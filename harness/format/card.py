"""Content hashes of what a formatted dataset depends on, and its `dataset_card.json`."""

from __future__ import annotations

from collections import Counter

from harness.io import sha256_text, stable_hash


def tokenizer_hash(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocab, merges, normaliser, pre-tokenizer,
    added tokens), independent of the chat template, which is hashed on its own."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return stable_hash({"tokenizer": definition, "special": tokenizer.all_special_tokens})


def template_hash(tokenizer) -> str | None:
    return sha256_text(tokenizer.chat_template) if tokenizer.chat_template else None


def histogram(lengths: list[int], max_length: int, bins: int = 8) -> list[dict]:
    width = max(1, -(-max_length // bins))
    hist = Counter(min(n // width, bins - 1) for n in lengths)
    return [{"from": i * width, "to": (i + 1) * width - 1, "count": hist.get(i, 0)}
            for i in range(bins)]


def content_hash(rows: list[dict]) -> str:
    return stable_hash([[r["input_ids"], r["assistant_masks"]] for r in rows])


def describe(rows: list[dict], max_length: int) -> dict:
    """Counts, token totals and the length histogram of a list of examples."""
    lengths = [len(r["input_ids"]) for r in rows]
    return {
        "content_hash": content_hash(rows),
        "examples": dict(Counter(r["kind"] for r in rows)),
        "tokens": sum(lengths),
        "supervised_tokens": sum(sum(r["assistant_masks"]) for r in rows),
        "length_histogram": histogram(lengths, max_length),
    }
