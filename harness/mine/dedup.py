"""Exact and near-duplicate removal, across the split boundary, and benchmark decontamination.

Text is compared as shingles of `ngram` code tokens (identifiers, numbers, single punctuation;
diff markup skipped, so a pasted function matches its source), all computed with numpy over
the text's bytes. Near duplicates: MinHash signatures in datasketch's affine32 scheme and LSH
with datasketch's banding (Jaccard). Contamination is a containment question (a benchmark
solution pasted into a large file has a low Jaccard similarity with that file but is fully
inside it), answered exactly from the shingles, per record, in the workers; MinHash LSH
Ensemble, datasketch's containment index, took longer to build than mining itself.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

import numpy as np


def _is_diff(text: str) -> bool:
    return "\n@@ " in text or text.startswith("--- ")


# Tokens, found with numpy over the UTF-8 bytes (4x faster than a regex and a hash per token
# in Python): runs of word bytes (ASCII letters, digits, "_" and every non-ASCII byte, so a
# non-ASCII letter stays inside its word), and every other non-space byte alone. On ASCII text
# these are the tokens of the regex `\w+|[^\w\s]` (tested).
_SPACE, _WORD, _PUNCT = 0, 1, 2
_CLASS = np.full(256, _PUNCT, dtype=np.uint8)
_CLASS[[ord(c) for c in " \t\n\r\x0b\x0c"]] = _SPACE
_CLASS[[ord(c) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"]] = _WORD
_CLASS[0x80:] = _WORD
_U64 = np.uint64
_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
_POWERS: list[np.ndarray] = []  # [base**i, base**-i] for i < len, modulo 2**64, grown on demand


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 1 << 16, 2 * len(_POWERS[0]) if _POWERS else 0)
        up = np.full(size, _BASE, dtype=_U64)
        down = np.full(size, pow(_BASE, -1, 1 << 64), dtype=_U64)
        up[0] = down[0] = 1
        _POWERS[:] = [np.cumprod(up), np.cumprod(down)]  # uint64 products wrap: modulo 2**64
    return _POWERS[0], _POWERS[1]


def _classes(raw: np.ndarray, diff: bool) -> np.ndarray:
    """Each byte's class; in a diff, the lines of its ---/+++/@@ headers and the +/- marker
    of every line count as space, so a pasted function matches its source."""
    cls = _CLASS[raw]
    if diff and len(raw):
        breaks = np.flatnonzero(raw == 10)
        starts = np.concatenate(([0], breaks + 1))
        b0, b1, b2, b3 = (raw.take(starts + k, mode="clip") for k in range(4))
        meta = (((b0 == 45) & (b1 == 45) & (b2 == 45) & (b3 == 32))       # "--- "
                | ((b0 == 43) & (b1 == 43) & (b2 == 43) & (b3 == 32))     # "+++ "
                | ((b0 == 64) & (b1 == 64) & (b2 == 32)))                 # "@@ "
        cls[starts[((b0 == 43) | (b0 == 45)) & (starts < len(raw))]] = _SPACE
        ends = np.append(breaks, len(raw))
        for i in np.flatnonzero(meta).tolist():  # a few header lines per file
            cls[starts[i]:ends[i]] = _SPACE
    return cls


def token_spans(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 bytes, token starts, token ends) of `text`, diff markup skipped."""
    raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    cls = _classes(raw, _is_diff(text))
    edge = np.ones(len(raw) + 1, dtype=bool)  # a token boundary before each byte, and at the end
    edge[1:-1] = (cls[1:] != cls[:-1]) | (cls[1:] == _PUNCT)
    solid = cls != _SPACE
    return raw, np.flatnonzero(edge[:-1] & solid), np.flatnonzero(edge[1:] & solid) + 1


def token_hashes(text: str) -> np.ndarray:
    """A 64-bit polynomial hash of each token of `text`."""
    return _hashes(*token_spans(text))


def _hashes(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of each token from prefix sums: hash(b[s:e]) = sum of b[j] * base**(j - s) =
    (P[e] - P[s]) * base**-s, all modulo 2**64."""
    if not len(starts):
        return np.empty(0, dtype=_U64)
    up, down = _powers(len(raw))
    prefix = np.zeros(len(raw) + 1, dtype=_U64)
    np.cumsum(raw * up[:len(raw)], out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * down[starts]


def shingle_hashes(h: np.ndarray, ngram: int) -> np.ndarray:
    """The 32-bit hash of every run of `ngram` tokens (of token hashes `h`), repeats included:
    the token hashes combined polynomially, modulo 2**64, then folded to 32 bits."""
    if not len(h):
        return np.empty(0, dtype=np.uint32)
    n = min(ngram, len(h))
    acc = np.zeros(len(h) - n + 1, dtype=_U64)
    for k in range(n):
        acc = acc * _U64(1_000_003) + h[k:len(h) - n + 1 + k]
    return (acc ^ (acc >> _U64(32))).astype(np.uint32)


def shingles(text: str, ngram: int) -> np.ndarray:
    """The distinct shingle hashes of `text`, sorted."""
    return np.unique(shingle_hashes(token_hashes(text), ngram))


SCHEME = "affine32"  # datasketch's default permutation scheme; stored signatures use it
_U32 = np.uint32


@lru_cache(maxsize=4)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, scheme=SCHEME).permutations
    return a.astype(_U32), b.astype(_U32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, datasketch's pre-mix for the affine32 scheme."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def signature(sh: np.ndarray, num_perm: int) -> bytes:
    """MinHash hash values of the shingles, as bytes: what datasketch's `MinHash(scheme=
    "affine32").update_batch` computes (tested bit for bit), without its per-value Python call
    to the hash function, which took half the time here (shingles are hashed already)."""
    a, b = _permutations(num_perm)
    if not len(sh):
        return np.full(num_perm, 0xFFFFFFFF, dtype="<u4").tobytes()
    hv = _fmix32(sh.astype(_U32))[:, None]
    return (hv * a + b).min(axis=0).astype("<u4").tobytes()


def fingerprint(request: str, response: str, ngram: int, num_perm: int,
                bench: Benchmarks | None) -> dict:
    """What dedup and decontamination need of a record (request → response): the MinHash
    signature of both (`_sig`), the benchmark item they contain, if any (`_contaminated`), and
    the response's exact key (`_key`, see `exact_key`), from one tokenisation. Repeated
    shingles change neither signature nor containment, so they are not removed first."""
    resp = token_hashes(response)
    sh = shingle_hashes(np.concatenate((token_hashes(request), resp)), ngram)
    return {"_sig": base64.b64encode(signature(sh, num_perm)).decode(),
            "_contaminated": bench.contained(sh) if bench else None, "_key": _change_key(resp)}


def contamination(text: str, ngram: int, bench: Benchmarks | None) -> str | None:
    """The benchmark item `text` contains, if any (what a record needs that is never compared
    for near duplicates, such as a whole FIM file)."""
    return bench.contained(shingle_hashes(token_hashes(text), ngram)) if bench else None


def minhash(sig: str | bytes):
    """A stored signature as datasketch's `LeanMinHash`, to compare with datasketch's own."""
    from datasketch import LeanMinHash

    raw = base64.b64decode(sig) if isinstance(sig, str) else sig
    return LeanMinHash(seed=1, hashvalues=np.frombuffer(raw, dtype="<u4").astype(_U32),
                       scheme=SCHEME)


def _change_key(tokens: np.ndarray) -> str:
    return hashlib.sha256(tokens.tobytes()).hexdigest()


def exact_key(record: dict) -> str:
    """Records that train the same thing: the same change (the same response tokens: markup
    and whitespace aside), or the same file. Kept in the record (`_key`), so it is computed
    once, in the worker, and cached with the commit's result."""
    if "_key" not in record:
        record["_key"] = (hashlib.sha256(record["content"].encode()).hexdigest()
                          if record["kind"] == "fim_source" else _change_key(token_hashes(record["response"])))
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
    (`near_duplicate_of_train`), so the held-out set never measures memorisation.

    MinHash LSH with datasketch's banding for this threshold (`MinHashLSH(...).b, .r`) and its
    Jaccard estimate, but the band keys of all records are computed at once with numpy: the
    index's per-record insert and query cost ~60 µs each in Python, the largest serial step
    of mining after the per-commit work. Same candidates, same verdicts (tested).
    """
    from datasketch import MinHashLSH

    if threshold >= 1 or not records:  # off
        return records, []
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = np.stack([np.frombuffer(base64.b64decode(r["_sig"]), dtype="<u4") for r in records])
    bands = sigs[:, :lsh.b * lsh.r].reshape(len(records), lsh.b, lsh.r).astype(_U64)
    keys = np.arange(lsh.b, dtype=_U64)  # the band's number, so that bands never share a key
    for k in range(lsh.r):  # a 64-bit polynomial hash of each band's values
        keys = keys * _U64(0x9E3779B97F4A7C15) + bands[:, :, k]
    # a record that shares no bucket with any other is kept and is nobody's candidate: only
    # the others go through the sequential pass
    _, inverse, counts = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
    shared = (counts[inverse] > 1).reshape(keys.shape).any(axis=1)
    buckets: dict[int, list[int]] = {}
    dropped: dict[int, str] = {}
    for i in np.flatnonzero(shared).tolist():
        row = keys[i].tolist()
        near = {j for key in row for j in buckets.get(key, ())}
        hits = [j for j in near if np.count_nonzero(sigs[i] == sigs[j]) / num_perm >= threshold]
        if hits:
            cross = records[i]["split"] == "test" and any(records[j]["split"] == "train" for j in hits)
            dropped[i] = "near_duplicate_of_train" if cross else "near_duplicate"
            continue
        for key in row:
            buckets.setdefault(key, []).append(i)
    return ([r for i, r in enumerate(records) if i not in dropped],
            [(records[i], reason) for i, reason in sorted(dropped.items())])


_FILTER_MASK = np.uint32((1 << 22) - 1)


class Benchmarks:
    """Shingles of every HumanEval and MBPP prompt and solution, for exact containment checks:
    a record is contaminated when it holds at least `threshold` of an item's shingles. Items
    shorter than `min_shingles` are too generic to attribute (`return a + b`) and are skipped.
    The index is a sorted array of shingles with the items holding each (CSR), built and
    queried with numpy.
    """

    def __init__(self, ngram: int, threshold: float, min_shingles: int = 10) -> None:
        from harness.eval.benchmarks import load_humaneval, load_mbpp

        self.threshold, self.names, parts = threshold, [], []
        items = [(p.task_id, text) for p in [*load_humaneval(), *load_mbpp(split="all")]
                 for text in (p.prompt, p.reference.split(p.prompt, 1)[-1] if p.task == "humaneval" else p.reference)]
        # one tokenisation of all texts, joined at line breaks (never inside a token), cut
        # back into texts at their byte offsets
        raw, starts, ends = token_spans("\n".join(text for _, text in items))
        tokens = _hashes(raw, starts, ends)
        offsets = np.cumsum([0] + [len(text.encode("utf-8", "surrogatepass")) + 1 for _, text in items])
        cuts = np.searchsorted(starts, offsets).tolist()
        for (name, _), a, b in zip(items, cuts, cuts[1:], strict=False):
            sh = np.unique(shingle_hashes(tokens[a:b], ngram))
            if len(sh) >= min_shingles:
                parts.append(sh)
                self.names.append(name)
        self.sizes = np.array([len(sh) for sh in parts], dtype=np.int64)
        flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)
        order = np.argsort(flat, kind="stable")
        self.items = np.repeat(np.arange(len(parts)), self.sizes)[order]  # item of each entry
        self.keys, starts = np.unique(flat[order], return_index=True)
        self.starts = np.append(starts, len(flat))  # entries of keys[k]: starts[k]:starts[k + 1]
        # a one-probe Bloom filter on the low bits: one gather rules out ~97% of shingles
        self.maybe = np.zeros(int(_FILTER_MASK) + 1, dtype=bool)
        self.maybe[self.keys & _FILTER_MASK] = True
        self.min_hits = threshold * self.sizes.min() if len(parts) else 1

    def contained(self, sh: np.ndarray) -> str | None:
        """The task id of the benchmark item the shingle hashes `sh` contain the largest share
        of, if that share reaches the threshold."""
        if not len(self.keys):
            return None
        sh = sh[self.maybe[sh & _FILTER_MASK]]
        if len(sh) < self.min_hits:  # (counts with repeats: an upper bound of the distinct)
            return None
        at = np.minimum(np.searchsorted(self.keys, sh), len(self.keys) - 1)
        at = at[self.keys[at] == sh]
        if len(at) < self.min_hits:
            return None
        at = np.unique(at)  # index of each distinct shingle found
        if len(at) < self.min_hits:
            return None
        lens = self.starts[at + 1] - self.starts[at]
        entries = np.repeat(self.starts[at] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        share = np.bincount(self.items[entries], minlength=len(self.sizes)) / self.sizes
        best = int(share.argmax())
        return self.names[best] if share[best] >= self.threshold else None
