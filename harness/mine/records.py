"""The parts of a record: ids, hunks, messages as requests, and `build` for review fixes and
API pull requests (commit and PR pairs from git are made by pairs.py).

- `pr`: the pull request's title and description → the change it merged.
- `review_fix`: the reviewer's request and the code before → the corrected code (git-only
  signals here: "Apply suggestion(s) from code review" and `fixup!` commits).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from harness.mine import messages

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
def author_id(email: str) -> str:
    """Stable pseudonym: records carry no e-mail addresses."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def record_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def clean_message(message: str) -> str:
    """The message without residue, trailers and boilerplate (messages.py)."""
    return messages.clean(message)


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[str]

    @property
    def before(self) -> list[str]:
        return [line[1:] for line in self.lines if line[:1] in (" ", "-")]

    @property
    def after(self) -> list[str]:
        return [line[1:] for line in self.lines if line[:1] in (" ", "+")]


@lru_cache(maxsize=256)  # a file's diff is parsed for each view of it; callers never mutate
def hunks(diff: str) -> list[Hunk]:
    out: list[Hunk] = []
    for line in diff.split("\n"):
        if m := _HUNK.match(line):
            a, b, c, d = m.groups()
            out.append(Hunk(int(a), int(b or 1), int(c), int(d or 1), []))
        elif out and line[:1] in (" ", "-", "+"):
            out[-1].lines.append(line)
    return out


_HUNK_OLD = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.M)


def old_spans(diff: str) -> list[tuple[int, int]]:
    """(first line, line count) in the old file of each hunk: what `hunks` gives, from the
    hunk headers alone."""
    return [(int(a), int(b or 1)) for a, b in _HUNK_OLD.findall(diff)]


@dataclass
class FileDiff:
    """One changed file, already filtered and redacted."""

    old_path: str | None
    new_path: str | None
    diff: str
    added: int
    deleted: int
    old_blob: str | None = None
    before: Callable[[], str | None] | None = None  # the file before the change, read lazily

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


def unified_diff(files: list[FileDiff]) -> str:
    chunks = []
    for f in files:
        a = f"a/{f.old_path}" if f.old_path else "/dev/null"
        b = f"b/{f.new_path}" if f.new_path else "/dev/null"
        chunks.append(f"--- {a}\n+++ {b}\n{f.diff.rstrip()}\n")
    return "".join(chunks)


def _windows(spans: list[tuple[int, int]], n_lines: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        lo, hi = max(1, lo), min(n_lines, hi)
        if lo > hi:
            continue
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def code_before(files: list[FileDiff], context_lines: int, budget_chars: int,
                redact: Callable[[str, str], str]) -> str:
    """The old code around each hunk, file by file, while it fits in `budget_chars`; each
    window goes through `redact(text, path)` (only what is shown is scanned for secrets)."""
    if context_lines <= 0 or budget_chars <= 0:
        return ""
    parts: list[str] = []
    used = 0
    for f in files:
        if not f.old_path or f.before is None:
            continue
        text = f.before()
        if text is None:
            continue
        lines = text.split("\n")
        spans = [(start - context_lines, start + length - 1 + context_lines)
                 for start, length in old_spans(f.diff)]
        for lo, hi in _windows(spans, len(lines)):
            code = redact("\n".join(lines[lo - 1:hi]), f.old_path)
            part = f"--- {f.old_path} (lines {lo}-{hi})\n{code}\n"
            if used + len(part) > budget_chars:
                return "".join(parts)
            parts.append(part)
            used += len(part)
    return "".join(parts)


def regions(files: list[FileDiff]) -> tuple[str, str]:
    """(code before, code after) of every hunk, with its file and line numbers."""
    before, after = [], []
    for f in files:
        for h in hunks(f.diff):
            before.append(f"--- {f.old_path or f.path} (lines {h.old_start}-{h.old_start + max(h.old_len, 1) - 1})\n"
                          + "".join(line + "\n" for line in h.before))
            after.append(f"--- {f.path} (lines {h.new_start}-{h.new_start + max(h.new_len, 1) - 1})\n"
                         + "".join(line + "\n" for line in h.after))
    return "".join(before), "".join(after)


def instruction_for(kind: str, source: str, message: str, target: str | None) -> str:
    """The request side, from the commit message and what kind of source it is."""
    msg = clean_message(message)
    subject, _, body = msg.partition("\n")
    if source == "git:merge":  # "Merge pull request #N from x/y" + the PR title as body
        return body.strip() or subject
    if source == "git:squash":
        return (re.sub(r"\s+\(#\d+\)\s*$", "", subject) + "\n" + body).strip()
    if source == "git:fixup":
        return f"Fix up the earlier change \"{target}\"." + (f"\n\n{body.strip()}" if body.strip() else "")
    if source == "git:suggestion":
        return "Apply the reviewer's suggestion from code review." + (
            f"\n\n{body.strip()}" if body.strip() else "")
    return msg


def build(kind: str, source: str, message: str, target: str | None, files: list[FileDiff],
          fit_chars: int, context_lines: int,
          redact: Callable[[str, str], str]) -> tuple[str, str, str]:
    """(request, context, response) of a record of `kind` made from these files; the record's
    instruction is request + context (context: the code before the change, or "")."""
    request = instruction_for(kind, source, message, target)
    if kind == "review_fix":
        before, after = regions(files)
        return request, f"\n\nThe code before the change:\n{before}", after
    response = unified_diff(files)
    context = code_before(files, context_lines, fit_chars - len(request) - len(response) - 40,
                          redact)
    return request, f"\n\nThe code before the change:\n{context}" if context else "", response
