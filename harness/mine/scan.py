"""The cheap pass: one streaming `git log --raw` over the commits to mine.

It yields what the cheap filters need (message, author, dates, parents, per-file paths, modes
and blob ids) without git opening a single file, so the diff work is done only for the commits
that survive (see diffs.py). Line counts come with the diff: `--numstat` makes git run its diff
on every file, the same work as the patch itself, so a numstat pass followed by patches had git
diff every surviving file twice (bench/bench_mine.py's history, in batches of 250: `git log
--raw` 0.17 s, with `--numstat` 1.33 s, the survivors' patches 1.0 s). `-z` makes paths and
entries NUL-separated, so odd file names and messages cannot confuse the parser.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# Settings that make git's output independent of the user's and the repository's config.
GIT_SAFE = ["-c", "log.showSignature=false", "-c", "core.quotePath=false",
            "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false",
            "-c", "diff.relative=false", "-c", "i18n.logOutputEncoding=UTF-8"]
_FORMAT = "%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%at%x1f%ct%x1f%B%x1f"


@dataclass
class FileStat:
    path: str
    old_path: str | None
    status: str          # A, M, D, R, C, T
    old_mode: str
    new_mode: str
    old_blob: str
    new_blob: str
    added: int | None = None     # line counts, known once the file is diffed
    deleted: int | None = None


@dataclass
class CommitMeta:
    sha: str
    parents: list[str]
    author_name: str
    author_email: str
    authored_at: str     # ISO 8601 in UTC, so that string order is time order
    committed_at: str
    message: str
    files: list[FileStat] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.message.strip().split("\n", 1)[0]


def iso_utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def _parse_files(tokens: list[bytes]) -> list[FileStat]:
    out: list[FileStat] = []
    i = 0
    while i < len(tokens):
        old_mode, new_mode, old_blob, new_blob, status = _decode(tokens[i][1:]).split(" ")
        if status[0] in "RC":
            old, new = _decode(tokens[i + 1]), _decode(tokens[i + 2])
            i += 3
        else:
            old = new = _decode(tokens[i + 1])
            i += 2
        out.append(FileStat(new, None if status[0] == "A" else old, status[0], old_mode, new_mode,
                            old_blob, new_blob))
    return out


def _parse_commit(chunk: bytes) -> CommitMeta:
    header, _, tail = chunk.partition(b"\x1f\x00")
    sha, parents, an, ae, at, ct, msg = header.split(b"\x1f", 6)
    tokens = [t for t in tail.lstrip(b"\n").split(b"\x00") if t]
    return CommitMeta(sha=_decode(sha), parents=_decode(parents).split(), author_name=_decode(an),
                      author_email=_decode(ae), authored_at=iso_utc(int(at)),
                      committed_at=iso_utc(int(ct)), message=_decode(msg),
                      files=_parse_files(tokens))


_HEADER = re.compile(rb"[0-9a-f]{40}\x1f")


def _is_header(chunk: bytes) -> bool:
    return _HEADER.match(chunk) is not None


def scan(repo: str | Path, shas: Iterable[str]) -> Iterator[CommitMeta]:
    """Metadata and changed files of exactly `shas`, in the order given; merges against their
    first parent (what a merged pull request changed)."""
    cmd = ["git", "-C", str(repo), *GIT_SAFE, "log", "--no-walk=unsorted", "--stdin", "-z",
           "--raw", "-M", "--no-abbrev", "--diff-merges=first-parent",
           "--no-color", "--no-ext-diff", f"--format={_FORMAT}"]
    stdin = "".join(s + "\n" for s in shas).encode()
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git log failed in {repo}: {_decode(proc.stderr).strip()}")
    chunks: list[bytes] = []
    for part in proc.stdout.split(b"\x1e")[1:]:
        if chunks and not _is_header(part):  # a message or path that contained \x1e
            chunks[-1] += b"\x1e" + part
        else:
            chunks.append(part)
    for chunk in chunks:
        yield _parse_commit(chunk)
