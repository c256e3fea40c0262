"""Exact and near-duplicate removal, across the split boundary, and benchmark decontamination.

Text is compared as shingles of `ngram` code tokens (identifiers, numbers, single punctuation;
diff markup skipped, so a pasted function matches its source), all computed with numpy over
the text's bytes. Near duplicates: MinHash signatures in datasketch's affine32 scheme and LSH
with datasketch's banding (Jaccard). Contamination is a containment question (a benchmark
solution pasted into a large file has a low Jaccard similarity with that file but is fully
inside it), answered exactly from the shingles of a batch of records at once, in the
workers; MinHash LSH Ensemble, datasketch's containment index, took longer to build than
mining itself.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from itertools import pairwise

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


def _classes(raw: np.ndarray, offsets: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Each byte's class, for texts starting at byte `offsets`; in the texts that are diffs
    (`diff`), the lines of the ---/+++/@@ headers and the +/- marker of every line count as
    space, so a pasted function matches its source."""
    cls = _CLASS[raw]
    if diff.any() and len(raw):
        breaks = np.flatnonzero(raw == 10)
        starts = np.concatenate(([0], breaks + 1))
        in_diff = diff[np.searchsorted(offsets, starts, "right") - 1]
        b0, b1, b2, b3 = (raw.take(starts + k, mode="clip") for k in range(4))
        meta = in_diff & (((b0 == 45) & (b1 == 45) & (b2 == 45) & (b3 == 32))       # "--- "
                          | ((b0 == 43) & (b1 == 43) & (b2 == 43) & (b3 == 32))     # "+++ "
                          | ((b0 == 64) & (b1 == 64) & (b2 == 32)))                 # "@@ "
        cls[starts[in_diff & ((b0 == 43) | (b0 == 45)) & (starts < len(raw))]] = _SPACE
        if meta.any():  # header lines: +1 where one starts, -1 where it ends, a running sum
            edges = np.zeros(len(raw) + 1, dtype=np.int8)
            edges[starts[meta]] = 1
            edges[np.append(breaks, len(raw))[meta]] = -1
            cls[np.cumsum(edges[:-1], dtype=np.int8).view(bool)] = _SPACE
    return cls


def _spans(raw: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edge = np.ones(len(raw) + 1, dtype=bool)  # a token boundary before each byte, and at the end
    edge[1:-1] = (cls[1:] != cls[:-1]) | (cls[1:] == _PUNCT)
    solid = cls != _SPACE
    return np.flatnonzero(edge[:-1] & solid), np.flatnonzero(edge[1:] & solid) + 1


def _join(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 bytes of `texts` joined at line breaks, each text's first byte + the end, token
    starts, token ends): tokens never span a line break, so each token belongs to one text."""
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    raw = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
    offsets = np.cumsum([0] + [len(e) + 1 for e in encoded])
    cls = _classes(raw, offsets, np.array([_is_diff(t) for t in texts], dtype=bool))
    return raw, offsets, *_spans(raw, cls)


def token_spans(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 bytes, token starts, token ends) of `text`, diff markup skipped."""
    raw, _, starts, ends = _join([text])
    return raw, starts, ends


def tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes of all `texts`, cuts): text i's tokens are hashes[cuts[i]:cuts[i + 1]].
    One pass over all texts: per text, numpy's call overhead cost more than the work."""
    raw, offsets, starts, ends = _join(texts)
    return _hashes(raw, starts, ends), np.searchsorted(starts, offsets)


def token_hashes(text: str) -> np.ndarray:
    """A 64-bit polynomial hash of each token of `text`."""
    return tokens([text])[0]


_PIECE = 1 << 20  # bytes hashed per prefix sum: the powers table stays this size (see warm)


def _hashes(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of each token from prefix sums: hash(b[s:e]) = sum of b[j] * base**(j - s) =
    (P[e] - P[s]) * base**-s, all modulo 2**64; over pieces of ~`_PIECE` bytes cut at token
    starts, so that the table of powers need not be as long as the text."""
    out = np.empty(len(starts), dtype=_U64)
    if not len(starts):
        return out
    cuts = np.unique(np.searchsorted(starts, np.arange(0, int(starts[-1]) + 1, _PIECE)))
    for i, j in pairwise([*cuts.tolist(), len(starts)]):
        a, s, e = starts[i], starts[i:j] - starts[i], ends[i:j] - starts[i]
        piece = raw[a:a + e[-1]]
        up, down = _powers(len(piece))
        prefix = np.zeros(len(piece) + 1, dtype=_U64)
        np.cumsum(piece * up[:len(piece)], out=prefix[1:])
        out[i:j] = (prefix[e] - prefix[s]) * down[s]
    return out


def warm() -> None:
    """Build the table of powers now (in a parent process, before it forks workers)."""
    _powers(_PIECE + (1 << 16))


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


def _shingles_of(hashes: np.ndarray, cuts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, bounds): the shingles of each run of tokens hashes[cuts[i]:cuts[i + 1]]
    (as `shingle_hashes` of that run gives them) are sh[bounds[i]:bounds[i + 1]]."""
    lens = np.diff(cuts)
    full = shingle_hashes(hashes, ngram)  # shingle p: tokens p .. p + ngram - 1
    owner = np.repeat(np.arange(len(lens)), lens)[:len(full)]
    long = full[np.arange(len(full)) + ngram <= cuts[1:][owner]]
    # a run shorter than ngram is one shingle of all its tokens (none if it has none)
    short = np.flatnonzero((lens > 0) & (lens < ngram))
    bounds = np.concatenate(([0], np.cumsum(np.where(lens >= ngram, lens - ngram + 1, lens > 0))))
    if not len(short):
        return long, bounds
    sh = np.empty(bounds[-1], dtype=np.uint32)
    at = bounds[short]
    sh[at] = [shingle_hashes(hashes[cuts[i]:cuts[i + 1]], ngram)[0] for i in short.tolist()]
    rest = np.ones(len(sh), dtype=bool)
    rest[at] = False
    sh[rest] = long
    return sh, bounds


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


_BLOCK = 1 << 12  # shingles per (num_perm x shingles) matrix: 2 MB at 128 permutations, which
# stays in the CPU cache (16 MB matrices took about 3x longer here)


def signatures(sh: np.ndarray, bounds: np.ndarray, num_perm: int) -> np.ndarray:
    """MinHash hash values of each group of shingles sh[bounds[i]:bounds[i + 1]], one row per
    group: what datasketch's `MinHash(scheme="affine32").update_batch` computes (tested bit
    for bit), without its per-value Python call to the hash function (shingles are hashed
    already), for many groups per numpy call."""
    a, b = (x[:, None] for x in _permutations(num_perm))
    out = np.full((len(bounds) - 1, num_perm), 0xFFFFFFFF, dtype=_U32)
    hv = _fmix32(sh.astype(_U32))
    rows = np.flatnonzero(np.diff(bounds) > 0)
    firsts = bounds[rows]  # a group runs to the next non-empty group's first shingle
    i = 0
    while i < len(rows):
        j = max(i + 1, int(np.searchsorted(firsts, firsts[i] + _BLOCK)))
        lo, hi = firsts[i], bounds[rows[j - 1] + 1]
        out[rows[i:j]] = np.minimum.reduceat(a * hv[lo:hi] + b, firsts[i:j] - lo, axis=1).T
        i = j
    return out


def signature(sh: np.ndarray, num_perm: int) -> bytes:
    """The MinHash signature of one set of shingles, as bytes (see `signatures`)."""
    return signatures(sh, np.array([0, len(sh)]), num_perm)[0].astype("<u4").tobytes()


def fingerprints(pairs: list[tuple[str, str]], ngram: int, num_perm: int,
                 bench: Benchmarks | None) -> list[dict]:
    """What dedup and decontamination need of each record (request, response): the MinHash
    signature of both (`_sig`), the benchmark item they contain, if any (`_contaminated`), and
    the response's exact key (`_key`, see `exact_key`), from one tokenisation of all records.
    Repeated shingles change neither signature nor containment, so they are not removed."""
    hashes, cuts = tokens([t for pair in pairs for t in pair])
    sh, bounds = _shingles_of(hashes, cuts[::2], ngram)  # request and response together
    sigs = signatures(sh, bounds, num_perm).astype("<u4")
    dirty = bench.contained_many(sh, bounds) if bench else [None] * len(pairs)
    return [{"_sig": base64.b64encode(sig.tobytes()).decode(), "_contaminated": d,
             "_key": _change_key(hashes[cuts[2 * i + 1]:cuts[2 * i + 2]])}
            for i, (sig, d) in enumerate(zip(sigs, dirty, strict=True))]


def fingerprint(request: str, response: str, ngram: int, num_perm: int,
                bench: Benchmarks | None) -> dict:
    """`fingerprints` of one record."""
    return fingerprints([(request, response)], ngram, num_perm, bench)[0]


def contamination(texts: list[str], ngram: int, bench: Benchmarks | None) -> list[str | None]:
    """The benchmark item each text contains, if any (what a record needs that is never
    compared for near duplicates, such as a whole FIM file)."""
    if not bench:
        return [None] * len(texts)
    return bench.contained_many(*_shingles_of(*tokens(texts), ngram))


def minhash(sig: str | bytes):
    """A stored signature as datasketch's `LeanMinHash`, to compare with datasketch's own."""
    from datasketch import LeanMinHash

    raw = base64.b64decode(sig) if isinstance(sig, str) else sig
    return LeanMinHash(seed=1, hashvalues=np.frombuffer(raw, dtype="<u4").astype(_U32),
                       scheme=SCHEME)


def _change_key(hashes: np.ndarray) -> str:
    return hashlib.sha256(hashes.tobytes()).hexdigest()


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


@lru_cache(maxsize=4)
def bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's LSH banding (bands, rows per band) for this threshold: it integrates for
    them (18 ms here), so the stage asks once, while git lists the commits, not at the end."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


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
    if threshold >= 1 or not records:  # off
        return records, []
    b, r = bands(threshold, num_perm)
    sigs = np.stack([np.frombuffer(base64.b64decode(rec["_sig"]), dtype="<u4") for rec in records])
    values = sigs[:, :b * r].reshape(len(records), b, r).astype(_U64)
    keys = np.arange(b, dtype=_U64)  # the band's number, so that bands never share a key
    for k in range(r):  # a 64-bit polynomial hash of each band's values
        keys = keys * _U64(0x9E3779B97F4A7C15) + values[:, :, k]
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
        from harness.benchmarks import load_humaneval, load_mbpp

        self.threshold = threshold
        items = [(p.task_id, text) for p in [*load_humaneval(), *load_mbpp(split="all")]
                 for text in (p.prompt, p.reference.split(p.prompt, 1)[-1] if p.task == "humaneval" else p.reference)]
        # every item's distinct shingles at once: (item, shingle) pairs made unique
        sh, bounds = _shingles_of(*tokens([text for _, text in items]), ngram)
        owner = np.repeat(np.arange(len(items), dtype=np.uint64), np.diff(bounds))
        pairs = np.unique((owner << _U64(32)) | sh)
        owner, sh = (pairs >> _U64(32)).astype(np.int64), pairs.astype(np.uint32)
        sizes = np.bincount(owner, minlength=len(items))
        kept = sizes >= min_shingles
        self.names = [name for (name, _), k in zip(items, kept.tolist(), strict=True) if k]
        self.sizes = sizes[kept]
        keep = kept[owner]
        owner, sh = (np.cumsum(kept) - 1)[owner[keep]], sh[keep]  # items renumbered
        order = np.argsort(sh, kind="stable")
        self.items = owner[order]  # item of each entry
        self.keys, starts = np.unique(sh[order], return_index=True)
        self.starts = np.append(starts, len(sh))  # entries of keys[k]: starts[k]:starts[k + 1]
        # a one-probe Bloom filter on the low bits: one gather rules out ~97% of shingles
        self.maybe = np.zeros(int(_FILTER_MASK) + 1, dtype=bool)
        self.maybe[self.keys & _FILTER_MASK] = True
        self.min_hits = threshold * self.sizes.min() if len(self.sizes) else 1

    def contained_many(self, sh: np.ndarray, bounds: np.ndarray) -> list[str | None]:
        """For each group of shingle hashes sh[bounds[i]:bounds[i + 1]]: the task id of the
        benchmark item the group contains the largest share of, if that share reaches the
        threshold (the lowest item on a tie). All groups in one pass of numpy calls."""
        n = len(bounds) - 1
        out: list[str | None] = [None] * n
        if not len(self.keys) or not len(sh):
            return out
        group = np.repeat(np.arange(n), np.diff(bounds))
        keep = self.maybe[sh & _FILTER_MASK]
        sh, group = sh[keep], group[keep]
        at = np.minimum(np.searchsorted(self.keys, sh), len(self.keys) - 1)
        found = self.keys[at] == sh
        # each (group, distinct shingle found) once; groups with too few cannot reach the share
        pair = np.unique(group[found].astype(np.int64) * len(self.keys) + at[found])
        group, at = pair // len(self.keys), pair % len(self.keys)
        enough = np.bincount(group, minlength=n)[group] >= self.min_hits
        group, at = group[enough], at[enough]
        if not len(at):
            return out
        lens = self.starts[at + 1] - self.starts[at]
        entries = np.repeat(self.starts[at] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        # hits per (group, item), then each group's best share
        hits, counts = np.unique(np.repeat(group, lens) * len(self.sizes) + self.items[entries],
                                 return_counts=True)
        group, item = hits // len(self.sizes), hits % len(self.sizes)
        share = counts / self.sizes[item]
        order = np.lexsort((item, -share, group))  # per group: highest share, then lowest item
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        for g, i, s in zip(group[first].tolist(), item[first].tolist(), share[first].tolist(), strict=True):
            if s >= self.threshold:
                out[g] = self.names[i]
        return out

    def contained(self, sh: np.ndarray) -> str | None:
        """`contained_many` of one group of shingle hashes."""
        return self.contained_many(sh, np.array([0, len(sh)]))[0]
