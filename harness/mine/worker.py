"""Mine one batch of commits end to end, in a worker process.

Cheap signals first: the streaming `git log --raw` pass (scan.py) classifies and filters
every commit of the batch by message, author, paths and file count; only the survivors get a
blob-size check (one `git cat-file --batch-check`) and then their patches (diffs.py, one
`git diff-tree --stdin`), which give the line counts for the size filter; secrets are redacted
and MinHash signatures computed here too, so all per-commit work runs in parallel and its
result can be cached by commit sha (cache.py).
"""

from __future__ import annotations

import functools
import gc
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from harness import redact
from harness.mine import classes, dedup, pairs
from harness.mine.cache import CommitCache
from harness.mine.diffs import line_counts, modified_files, open_repo
from harness.mine.filters import (
    bot_reason,
    classify,
    content_reason,
    file_reason,
    message_reason,
    size_reason,
)
from harness.mine.records import FileDiff, author_id, build, hunks, instruction_for, record_id
from harness.mine.scan import CommitMeta, FileStat, scan
from harness.redact import Redactor

# Settings a commit's result depends on (their hash keys the per-commit cache).
KEYS = ("skip_merges", "bot_patterns", "min_message_chars", "skip_paths", "vendored_paths", "min_changed_lines",
        "max_changed_lines", "max_files", "max_file_bytes", "max_line_chars", "fim_extensions",
        "context_lines", "fit_tokens", "chars_per_token", "pr", "review", "dedup", "benchmarks",
        "target_format", "max_parts", "over_budget")

HEAVY_BYTES = 100_000
_STATE: dict[str, Any] = {}


def _cache(spec: tuple[str, str] | None) -> CommitCache | None:
    """This process's connection to the per-commit cache (a forked worker opens its own)."""
    if spec is None:
        return None
    if _STATE.get("cache_of") != (spec, os.getpid()):
        if _STATE.get("cache_of", (None, None))[1] == os.getpid():
            _STATE["cache"].close()  # this process's connection to another cache
        _STATE.update(cache_of=(spec, os.getpid()), cache=CommitCache(Path(spec[0]), spec[1]))
    return _STATE["cache"]


def _repo(path: str):
    if _STATE.get("path") != path:
        _STATE.update(path=path, repo=open_repo(path), redactor=Redactor())
    return _STATE["repo"], _STATE["redactor"]


def die_with_parent(parent: int) -> None:
    """A worker's initializer: have the kernel kill this process when the process that forked
    it dies, however it dies (a SIGKILLed `harness mine` left its workers, ~135 MB each,
    blocked on the pool's queue for minutes: they hold the queue's write end themselves, so
    they never see it close). Linux's PR_SET_PDEATHSIG; elsewhere the pool's own checks."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: no prctl
        return
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def prepare(o: dict) -> None:
    """Build once per process what mining needs: the benchmark index for decontamination, the
    secret scanners' compiled patterns, the token hashes' table of powers and the LSH banding.
    Called before the workers fork, so that they inherit all of it instead of each building
    its own (and while git lists the commits)."""
    redact.plugins()
    dedup.warm()
    d = o["dedup"]
    if d["threshold"] < 1:
        dedup.bands(d["threshold"], d["num_perm"])
    key = (d["ngram"], d["contamination_threshold"], d["decontaminate"])
    if _STATE.get("bench_key") != key:
        _STATE["bench"] = (dedup.Benchmarks(d["ngram"], d["contamination_threshold"])
                           if d["decontaminate"] else None)
        _STATE["bench_key"] = key


def _blob_sizes(repo: str, blobs: set[str]) -> dict[str, int]:
    if not blobs:
        return {}
    res = subprocess.run(["git", "-C", repo, "cat-file", "--batch-check=%(objectname) %(objectsize)"],
                         input="".join(b + "\n" for b in blobs).encode(), capture_output=True)
    sizes = {}
    for line in res.stdout.decode().splitlines():
        sha, _, size = line.partition(" ")
        if size.isdigit():
            sizes[sha] = int(size)
    return sizes


def _limits(kind: str, o: dict) -> tuple[int, int]:
    if kind == "review_fix":
        return o["review"]["min_changed_lines"], o["review"]["max_changed_lines"]
    if kind == "pr":
        return o["min_changed_lines"], o["pr"]["max_changed_lines"]
    return o["min_changed_lines"], o["max_changed_lines"]


def _cheap(c: CommitMeta, o: dict, boundary: set[str], res: dict) -> list[FileStat] | None:
    """Classify `c` and apply every filter the streaming pass can decide; kept files or None."""
    if c.sha in boundary:
        res["drop"] = "shallow_boundary"
        return None
    kind = classify(c.subject, c.message, len(c.parents) > 1)
    if kind is None:  # a merge that is not a pull request's
        if o["skip_merges"]:
            res["drop"] = "merge"
            return None
        kind = classify(c.subject, c.message, False)
    res.update(kind=kind.kind, source=kind.source, pr=kind.pr, target=kind.target)
    if reason := bot_reason(c.author_name, c.author_email, c.message, o["bot_patterns"]):
        res["drop"] = reason
        return None
    if kind.kind == "revert":
        res["drop"] = "revert_commit"
        return None
    request = instruction_for(kind.kind, kind.source, c.message, kind.target)
    if kind.kind in ("commit", "pr") and (reason := message_reason(request, o["min_message_chars"])):
        res["drop"] = reason
        return None
    files = []
    for f in c.files:
        if reason := file_reason(f.path, f.new_mode, f.old_mode, o["skip_paths"], o["vendored_paths"]):
            res["files_dropped"][reason] += 1
        else:
            files.append(f)
    return _files_check(files, o, res)


def _files_check(files: list, o: dict, res: dict) -> list | None:
    """The size filter's file-count half, decidable before any diff."""
    if not files:
        res["drop"] = "no_text_changes"
        return None
    if len(files) > o["max_files"]:
        res["drop"] = "too_many_files"
        return None
    return files


def _size_check(kind: str, files: list, o: dict, res: dict) -> list | None:
    if _files_check(files, o, res) is None:
        return None
    lo, hi = _limits(kind, o)
    if reason := size_reason(sum(f.added + f.deleted for f in files), len(files), lo, hi, o["max_files"]):
        res["drop"] = reason
        return None
    return files


def _read_blobs(repo: str, blobs: set[str]) -> dict[str, bytes]:
    """Contents of `blobs` from one `git cat-file --batch` (GitPython reads one object per
    round trip, ~1 ms each here)."""
    if not blobs:
        return {}
    res = subprocess.run(["git", "-C", repo, "cat-file", "--batch"], capture_output=True,
                         input="".join(b + "\n" for b in blobs).encode())
    out, data, pos = {}, res.stdout, 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        sha, kind, size = ([*data[pos:end].split(b" "), b"", b""])[:3]
        if kind == b"missing" or not size:
            pos = end + 1
            continue
        n = int(size)
        out[sha.decode()] = data[end + 1:end + 1 + n]
        pos = end + 1 + n + 1
    return out


class _Scrub:
    """Redacts one commit's texts and remembers the secret types it found."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor, self.found = redactor, []

    def __call__(self, text: str, name: str) -> str:
        text, kinds = self.redactor.redact(text, name)
        self.found += kinds
        return text


def _prepare(c: CommitMeta, res: dict, files: list[FileStat], mfs: dict, o: dict,
             redact: _Scrub) -> tuple[str, list[FileDiff]] | None:
    """Content checks, line counts, the size filter and redaction of one surviving commit's
    files; (message, diffs)."""
    kept = []
    for f in files:
        mf = mfs.get(f.path)
        if mf is None:  # e.g. a mode-only change: no patch text
            res["files_dropped"]["no_patch"] += 1
            continue
        raw = mf._c_diff.diff or b""  # the bytes git wrote, before PyDriller's lossy decode
        counts = line_counts(raw)
        if reason := ("binary" if counts is None else content_reason(raw, o["max_line_chars"])):
            res["files_dropped"][reason] += 1
            continue
        f.added, f.deleted = counts
        kept.append(f)
    if _size_check(res["kind"], kept, o, res) is None:
        return None
    # files a model can learn to fill in: the commit's FIM candidates (see stage._file_sources)
    res["fim"] = [[f.path, f.new_blob, f.old_path] for f in kept
                  if f.added and f.status != "D" and f.path.endswith(tuple(o["fim_extensions"]))]
    diffs = [FileDiff(f.old_path, f.path if f.status != "D" else None, redact(mfs[f.path].diff, f.path),
                      f.added, f.deleted, old_blob=f.old_blob if f.status != "A" else None)
             for f in kept]
    return redact(c.message, "COMMIT_EDITMSG"), diffs


def _records(c: CommitMeta, res: dict, message: str, request: str, diffs: list[FileDiff],
             old: dict[str, bytes], o: dict, redact: _Scrub) -> list[tuple[dict, str]]:
    """(record, request: what near dedup compares besides the response) of each pair the
    change makes (pairs.py; `request`: the instruction the message makes); `res["cut"]` says
    whether it was whole, split or too long."""
    for d in diffs:
        if d.old_blob in old:
            d.before = lambda b=d.old_blob: old[b].decode("utf-8", "replace")
    fit = int(o["fit_tokens"] * o["chars_per_token"])
    if res["kind"] == "review_fix":
        request, context, response = build(res["kind"], res["source"], message, res["target"], diffs,
                                           fit, o["context_lines"], redact)
        made, res["cut"] = [pairs.Pair(request, context, response, [d.path for d in diffs],
                                       sum(d.added for d in diffs), sum(d.deleted for d in diffs))], "whole"
    else:
        made, res["cut"] = pairs.pairs(request, diffs, fit, o["context_lines"], o["target_format"],
                                       redact, o["max_parts"], o["over_budget"])
    out = []
    for i, p in enumerate(made):
        rec = {
            "id": record_id(res["kind"], c.sha, *([str(i)] if len(made) > 1 else [])),
            "kind": res["kind"], "source": res["source"], "pr": res["pr"], "shas": [c.sha],
            "authored_at": c.authored_at, "committed_at": c.committed_at, "author_id": res["author_id"],
            "instruction": p.request + p.context, "response": p.response, "files": p.files,
            "added": p.added, "deleted": p.deleted, "format": o["target_format"],
            "part": [i + 1, len(made)] if len(made) > 1 else None,
            "change_class": classes.part_class(p.files, res.get("change_class")),
            "redactions": sorted(set(redact.found)),
        }
        out.append((rec, p.request))  # the change itself is compared; the context is the repository's code
    return out


def _not_generated(diffs: list[FileDiff], old: dict[str, bytes], res: dict) -> list[FileDiff]:
    """The files whose old version does not say it is machine-written at its top (a change
    to the middle of a generated file never shows its header)."""
    kept = []
    for d in diffs:
        head = old.get(d.old_blob, b"")[:4096].decode("utf-8", "replace") if d.old_blob else ""
        if head and classes.generated_header(head):
            res["files_dropped"]["generated"] += 1
        else:
            kept.append(d)
    return kept


def _change_class(diffs: list[FileDiff], old: dict[str, bytes], message: str) -> str:
    """chore | docs | tests | formatting | code (classes.change_class); the new version of a Python
    file is its old one with the hunks applied, computed only when the names on both sides are
    the same (a layout change's necessary condition)."""
    per_file = [[line for h in hunks(d.diff) for line in h.lines] for d in diffs]

    def side(lines: list[str], sign: str) -> str:
        return "".join(line[1:] + "\n" for line in lines if line[:1] == sign)

    removed = "".join(side(lines, "-") for lines in per_file)
    added = "".join(side(lines, "+") for lines in per_file)
    versions = []
    if classes.same_names(removed, added):
        for d, lines in zip(diffs, per_file, strict=True):
            if not d.path.endswith(".py"):
                versions.append((d.path, side(lines, "-"), side(lines, "+")))
            elif d.old_path and d.new_path and d.old_blob in old:
                text = old[d.old_blob].decode("utf-8", "replace").split("\n")
                versions.append((d.path, "\n".join(text), "\n".join(pairs.apply_all(text, hunks(d.diff)))))
    return classes.change_class([d.path for d in diffs], removed, added, versions, message)


def bench() -> dedup.Benchmarks | None:
    return _STATE.get("bench")


def _without_gc(fn):
    """Run a batch with the cycle collector paused: a batch allocates many short-lived objects
    and makes almost no cycles, so the collector's passes (over the inherited benchmark index
    and modules too, copying their pages into the worker) were overhead: with this and the
    parent's `gc.freeze`, a cold run of bench/bench_mine.py's repository went from 2.6–2.9 s
    to 2.24–2.35 s. Cycles a batch makes are collected after it."""
    @functools.wraps(fn)
    def batch(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return batch


@_without_gc
def mine_chunk(repo: str, shas: list[str], o: dict, boundary: set[str] = frozenset(),
               cache: tuple[str, str] | None = None) -> list[dict]:
    """Results for `shas`, one dict per commit (see `stage.py` for how they are combined),
    stored in the cache `cache` (a `CommitCache.spec`) before they are returned."""
    grepo, redactor = _repo(repo)
    prepare(o)
    results, survivors = [], []
    for c in scan(repo, shas):
        res: dict = {"sha": c.sha, "committed_at": c.committed_at, "author_id": author_id(c.author_email),
                     "drop": None, "kind": "commit", "source": "git:commit", "pr": None,
                     "target": None, "records": [], "fim": [], "files_dropped": Counter()}
        results.append(res)
        files = _cheap(c, o, boundary, res)
        if files is not None:
            survivors.append((c, res, files))
    # the blob-size guard: a 50 MB file is never read, whatever its line count
    sizes = _blob_sizes(repo, {b for c, _, _ in survivors for f in c.files for b in (f.old_blob, f.new_blob)})
    size = lambda f: max(sizes.get(f.old_blob, 0), sizes.get(f.new_blob, 0))  # noqa: E731
    batch, single = [], []
    for c, res, files in survivors:
        small = [f for f in files if size(f) <= o["max_file_bytes"]]
        res["files_dropped"]["file_too_large"] += len(files) - len(small)
        if _files_check(small, o, res) is None:
            continue
        # a big file we skip (a lockfile, a data dump) would weigh down the batch's patch
        # stream: such commits get their own diff, restricted to the files we keep
        heavy = any(size(f) > HEAVY_BYTES for f in c.files if f not in small)
        (single if heavy else batch).append((c, res, small))
    base = {c.sha: (c.parents[0] if len(c.parents) > 1 else None) for c, _, _ in batch + single}
    diffs = modified_files(grepo, [(c.sha, base[c.sha]) for c, _, _ in batch])
    for c, _, files in single:  # commits that also touch files we never read: diff only ours
        paths = sorted({p for f in files for p in (f.path, f.old_path) if p})
        diffs.append(modified_files(grepo, [(c.sha, base[c.sha])], paths)[0])
    prepared = []
    for (c, res, files), mfs in zip(batch + single, diffs, strict=True):
        scrub = _Scrub(redactor)
        ready = _prepare(c, res, files, {mf.new_path or mf.old_path: mf for mf in mfs}, o, scrub)
        if ready is not None:
            prepared.append((c, res, *ready, scrub))
    # the code before every change: the prompt shows the region each change is made in
    old = _read_blobs(repo, {d.old_blob for _, _, _, ds, _ in prepared for d in ds if d.old_blob})
    built = []
    for c, res, message, diffs_, scrub in prepared:
        diffs_ = _not_generated(diffs_, old, res)
        if not diffs_:
            res["drop"] = "generated"
            continue
        # classed by what the request says (a PR's title, not its merge commit's subject)
        request = instruction_for(res["kind"], res["source"], message, res["target"])
        res["change_class"] = _change_class(diffs_, old, request)
        made = _records(c, res, message, request, diffs_, old, o, scrub)
        if not made:
            res["drop"] = "too_long"
        built += [(res, rec, request) for rec, request in made]
    prints = dedup.fingerprints([(request, pairs.code_of(rec["response"]) if rec.get("format") != "diff"
                                  else rec["response"]) for _, rec, request in built],
                                o["dedup"]["ngram"], o["dedup"]["num_perm"], bench())
    for (res, rec, _), fp in zip(built, prints, strict=True):
        res["records"].append({**rec, **fp})
    for res in results:
        res["files_dropped"] = dict(res["files_dropped"])
    if db := _cache(cache):
        db.put(results)
    return results


def _added_lines(grepo, files: list[tuple[str, str, str | None]]) -> list[list[int]]:
    """The lines each (commit, path, path before) added to the file: one batched diff of those
    commits (against their first parent), limited to those paths (a commit's other files may
    be ones mining never reads, such as a 50 MB dump)."""
    shas = list(dict.fromkeys(sha for sha, *_ in files))
    paths = sorted({p for _, path, old in files for p in (path, old) if p})  # renames pair up
    diffs = modified_files(grepo, [(s, None) for s in shas], paths)
    mfs = {sha: {mf.new_path: mf for mf in diff} for sha, diff in zip(shas, diffs, strict=True)}
    return [[n for n, _ in mfs[sha][path].diff_parsed["added"]] for sha, path, _ in files]


@_without_gc
def blob_chunk(repo: str, items: list[tuple[str, str, str, tuple[str, str | None] | None]], o: dict,
               cache: tuple[str, str] | None = None) -> list[dict]:
    """Derived data of whole files (sources.blob_data) for `(key, path, blob, change)` items,
    stored in the cache `cache` too. `change` is None for a train file; for a test file it is
    (the test commit, the path before it), whose added lines (`added` in the data) are where
    held-out FIM holes are cut and which functions become pairs."""
    from harness.mine.sources import blob_data, sign

    grepo, redactor = _repo(repo)
    prepare(o)
    data = _read_blobs(repo, {blob for _, _, blob, _ in items})
    changes = [(change[0], path, change[1]) for _, path, _, change in items if change]
    added = dict(zip(((sha, path) for sha, path, _ in changes), _added_lines(grepo, changes), strict=True))
    out = []
    for key, path, blob, change in items:
        lines = added[change[0], path] if change else None
        d = blob_data(data[blob], path, o, redactor, lines)
        out.append({"sha": key, "data": d if d is None or lines is None else {**d, "added": lines}})
    sign([r["data"] for r in out], [change is None for *_, change in items], o, bench())
    if db := _cache(cache):
        db.put(out)
    return out
