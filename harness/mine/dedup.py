"""Exact and near-duplicate removal, across the split boundary, and benchmark decontamination.

Text is compared as shingles of `ngram` code tokens (identifiers, numbers, single punctuation;
diff markers stripped, so a pasted function matches its source). Near duplicates are found with
datasketch's MinHash LSH (Jaccard). Contamination is a containment question (a benchmark
solution pasted into a large file has a low Jaccard similarity with that file but is fully
inside it), answered exactly from the shingles, per record, in the workers; MinHash LSH
Ensemble, datasketch's containment index, took longer to build than mining itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections import Counter
from functools import lru_cache

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
_DIFF_META = re.compile(r"^(--- |\+\+\+ |@@ )")


def plain(text: str) -> str:
    """Text without unified-diff markup: headers dropped, +/-/space prefixes removed."""
    if "\n@@ " not in text and not text.startswith("--- "):
        return text
    out = []
    for line in text.split("\n"):
        if _DIFF_META.match(line):
            continue
        out.append(line[1:] if line[:1] in "+- " else line)
    return "\n".join(out)


class _TokenHashes(dict):
    """crc32 of each distinct token, computed once per process (code reuses its tokens)."""

    def __missing__(self, token: str) -> int:
        if len(self) > 1_000_000:
            self.clear()
        h = self[token] = zlib.crc32(token.encode())
        return h


_HASHES = _TokenHashes()


def shingles(text: str, ngram: int) -> set[int]:
    """32-bit hashes of every run of `ngram` tokens: each token is hashed (crc32: stable across
    processes, cached) and the runs are combined with numpy, far faster than hashing joins."""
    toks = _TOKEN.findall(plain(text))
    if not toks:
        return set()
    h = np.fromiter(map(_HASHES.__getitem__, toks), dtype=np.uint64, count=len(toks))
    n = min(ngram, len(toks))
    acc = np.zeros(len(toks) - n + 1, dtype=np.uint64)
    for k in range(n):  # polynomial combination, wrapping modulo 2**64
        acc = acc * np.uint64(1_000_003) + h[k:len(toks) - n + 1 + k]
    return set((acc & np.uint64(0xFFFFFFFF)).tolist())


SCHEME = "affine32"  # datasketch's default hashing scheme; stored signatures use it


def _identity(x: int) -> int:
    return x


@lru_cache(maxsize=4)
def _permutations(num_perm: int):
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, scheme=SCHEME).permutations


def signature(text: str, num_perm: int, ngram: int,
              sh: set[int] | None = None) -> tuple[bytes, int]:
    """(MinHash hash values as bytes, number of shingles) of `text` (or of its shingles)."""
    from datasketch import MinHash

    sh = shingles(text, ngram) if sh is None else sh
    m = MinHash(num_perm=num_perm, permutations=_permutations(num_perm), scheme=SCHEME,
                hashfunc=_identity)
    m.update_batch(list(sh))
    return m.hashvalues.astype("<u8").tobytes(), len(sh)


def minhash(sig: str | bytes, num_perm: int):
    from datasketch import LeanMinHash

    raw = base64.b64decode(sig) if isinstance(sig, str) else sig
    return LeanMinHash(seed=1, hashvalues=np.frombuffer(raw, dtype="<u8").astype(np.uint64),
                       scheme=SCHEME)


def exact_key(record: dict) -> str:
    """Records that train the same thing: the same change (response, markup and whitespace
    aside), or the same file. Kept in the record (`_key`), so it is computed once, in the
    worker, and cached with the commit's result."""
    if "_key" not in record:
        text = record["content"] if record["kind"] == "fim_source" else " ".join(plain(record["response"]).split())
        record["_key"] = hashlib.sha256(text.encode()).hexdigest()
    return record["_key"]


def exact_dedup(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): the first record of each exact key is kept (pass oldest first)."""
    seen, kept, dropped = set(), [], []
    for r in records:
        key = (r["kind"] == "fim_source", exact_key(r))
        (dropped if key in seen else kept).append(r)
        seen.add(key)
    return kept, dropped


def near_dedup(records: list[dict], threshold: float,
               num_perm: int) -> tuple[list[dict], list[tuple[dict, str]]]:
    """(kept, [(dropped, reason)]): near duplicates go, the first is kept. Pass train records
    first (oldest first), then test: a test record similar to a train record is dropped
    (`near_duplicate_of_train`), so the held-out set never measures memorisation."""
    from datasketch import MinHashLSH

    if threshold >= 1:  # off
        return records, []
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    split_of: dict[int, str] = {}
    sigs: dict[int, object] = {}
    kept, drops = [], []
    for i, r in enumerate(records):
        m = minhash(r["_sig"], num_perm)
        hits = [k for k in lsh.query(m) if sigs[k].jaccard(m) >= threshold]
        if hits:
            cross = r["split"] == "test" and any(split_of[k] == "train" for k in hits)
            drops.append((r, "near_duplicate_of_train" if cross else "near_duplicate"))
            continue
        lsh.insert(i, m)
        sigs[i], split_of[i] = m, r["split"]
        kept.append(r)
    return kept, drops


class Benchmarks:
    """Shingles of every HumanEval and MBPP prompt and solution, for exact containment checks:
    a record is contaminated when it holds at least `threshold` of an item's shingles. Items
    shorter than `min_shingles` are too generic to attribute (`return a + b`) and are skipped.
    """

    def __init__(self, ngram: int, threshold: float, min_shingles: int = 10) -> None:
        from harness.eval.benchmarks import load_humaneval, load_mbpp

        self.threshold, self.names, self.sizes = threshold, [], []
        self.index: dict[int, list[int]] = {}
        self.keys: frozenset[int] = frozenset()
        for p in [*load_humaneval(), *load_mbpp(split="all")]:
            solution = p.reference.split(p.prompt, 1)[-1] if p.task == "humaneval" else p.reference
            for text in (p.prompt, solution):
                sh = shingles(text, ngram)
                if len(sh) < min_shingles:
                    continue
                for h in sh:
                    self.index.setdefault(h, []).append(len(self.names))
                self.names.append(p.task_id)
                self.sizes.append(len(sh))
        self.keys = frozenset(self.index)
        self.min_hits = threshold * min(self.sizes, default=1)

    def contained(self, sh: set[int]) -> str | None:
        """The task id of a benchmark item `sh` contains, if any."""
        common = self.keys.intersection(sh)  # C-level: most shingles are in no benchmark
        if len(common) < self.min_hits:
            return None
        counts = Counter(i for h in common for i in self.index[h])
        for i, n in counts.most_common():
            if n / self.sizes[i] >= self.threshold:
                return self.names[i]
            if n < self.min_hits:
                break
        return None
