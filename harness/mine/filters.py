"""Cheap record filters. Each returns the reason a commit is dropped, or None to keep it;
the reason is the key under which `mine_stats.json` counts the drop."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

# Messages that say nothing about the change: a model cannot learn "what to do" from them.
_LOW_INFO = re.compile(
    r"^\s*(wip|update[sd]?|fix(es|ed)?|changes?|misc|tmp|temp|test|cleanup|typo|"
    r"merge\b.*|bump\b.*|v?\d+(\.\d+)+.*|release\b.*|initial commit)\s*[.!]?\s*$",
    re.IGNORECASE,
)


def bot_reason(author_name: str, author_email: str, message: str, patterns: Sequence[str]) -> str | None:
    """Commits by automation (dependabot, renovate, CI bots), by author or trailer."""
    who = f"{author_name} {author_email}".lower()
    trailers = "\n".join(
        line for line in message.lower().splitlines()
        if line.startswith(("signed-off-by:", "co-authored-by:"))
    )
    for p in patterns:
        p = p.lower()
        if p in who or p in trailers:
            return "bot"
    return None


def message_reason(message: str, min_chars: int) -> str | None:
    subject = message.strip().splitlines()[0] if message.strip() else ""
    if len(message.strip()) < min_chars:
        return "short_message"
    if _LOW_INFO.match(subject) and len(message.strip().splitlines()) == 1:
        return "low_info_message"
    return None


def path_skipped(path: str, patterns: Sequence[str]) -> bool:
    """Lockfiles, vendored, minified and generated paths never become training text."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def size_reason(changed: int, n_files: int, min_lines: int, max_lines: int, max_files: int) -> str | None:
    if changed < min_lines:
        return "too_small"
    if changed > max_lines:
        return "too_large"
    if n_files > max_files:
        return "too_many_files"
    return None
