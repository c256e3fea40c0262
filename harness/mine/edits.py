"""A change pair's reply applied to the code its prompt shows: the inverse of pairs.py.

The three target formats (`search_replace`, `region`, `diff`) say the same change in different
words, so their held-out losses cannot be compared. What can be compared is the code a reply
produces: `result` applies a reply in any format to the regions the prompt shows and returns
the new code of those regions (and of new files), the same text for the true reply in every
format. bench/bench_target_format.py scores a trained candidate's replies that way.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from harness.mine.pairs import FORMATS, HEADER

_SHOWN = re.compile(r"^--- (.+) \(lines (\d+)-(\d+)\)$")
_SECTION = re.compile(r"^--- (.+?) \((lines (\d+)-(\d+)|new file|deleted)\)(?: \(renamed from (.+)\))?$")
_BLOCK = re.compile(r"^([^\n]*)\n<<<<<<< SEARCH\n(.*?)^=======\n(.*?)^>>>>>>> REPLACE$", re.M | re.S)
_RENAMED = re.compile(r"^(.*?) \(renamed from (.+)\)$")
_DELETED = re.compile(r"^--- (.+) \(deleted\)$", re.M)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


@dataclass
class Shown:
    """One region of the old code in a prompt: its file, first line and lines."""

    path: str
    lo: int
    lines: list[str]


def shown(instruction: str) -> list[Shown]:
    """The regions a pair's prompt shows, in order (read by their line counts, so a code line
    that looks like a header is still code)."""
    if HEADER not in instruction:
        return []
    lines = instruction.split(HEADER, 1)[1].split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _SHOWN.match(lines[i])
        if not m:
            i += 1
            continue
        lo, hi = int(m[2]), int(m[3])
        out.append(Shown(m[1], lo, lines[i + 1:i + 2 + hi - lo]))
        i += 2 + hi - lo
    return out


def _lines(text: str) -> list[str]:
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n") if text else []


def _find(regions: list[Shown], path: str, old: list[str]) -> tuple[Shown, int] | None:
    """The region of `path` holding `old` as consecutive lines, and where."""
    for r in regions:
        if r.path != path:
            continue
        for at in range(len(r.lines) - len(old) + 1):
            if r.lines[at:at + len(old)] == old:
                return r, at
    return None


def _search_replace(regions: list[Shown], reply: str, new_files: dict) -> bool:
    blocks = list(_BLOCK.finditer(reply))
    new_files.update(dict.fromkeys(_DELETED.findall(reply)))
    if not blocks:
        return bool(new_files)
    for b in blocks:
        path, search, replace = b[1].strip(), _lines(b[2]), _lines(b[3])
        if m := _RENAMED.match(path):
            path = m[2]
        if not search:
            new_files[path] = replace
            continue
        if (hit := _find(regions, path, search)) is None:
            return False
        r, at = hit
        r.lines[at:at + len(search)] = replace
    return True


def _region(regions: list[Shown], reply: str, new_files: dict) -> bool:
    sections: list[tuple[re.Match, list[str]]] = []
    for line in reply.split("\n"):
        if m := _SECTION.match(line):
            sections.append((m, []))
        elif sections:
            sections[-1][1].append(line)
    if not sections:
        return False
    if reply.endswith("\n"):  # the last section's own newline, not a blank line of code
        sections[-1][1].pop()
    seen: dict[str, int] = {}
    for m, body in sections:
        path = m[5] or m[1]
        if m[2] in ("new file", "deleted"):
            new_files[m[1]] = body if m[2] == "new file" else None
        else:
            mine = [r for r in regions if r.path == path]
            k = seen.get(path, 0)
            if k >= len(mine):
                return False
            mine[k].lines[:] = body
            seen[path] = k + 1
    return True


def _diff(regions: list[Shown], reply: str, new_files: dict) -> bool:
    """A unified diff per file; a new or deleted file is written as in `region` (pairs.py)."""
    path, target, hunks, lines, last = None, None, [], reply.split("\n"), None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith(("--- a/", "--- /dev/null")) and nxt.startswith("+++ "):
            path, target = line[4:].removeprefix("a/"), None
        elif line.startswith("+++ ") and path is not None and target is None:
            target = line[4:].removeprefix("b/")
        elif (m := _SECTION.match(line)) and m[2] in ("new file", "deleted"):
            path, target = None, m[1]
            new_files[m[1]] = [] if m[2] == "new file" else None
        elif path is None and target is not None and new_files.get(target) is not None:
            new_files[target].append(line)
            last = target if i == len(lines) - 1 and not line else None
        elif m := _HUNK.match(line):
            hunks.append((path, target, int(m[1]), []))
        elif hunks and line[:1] in (" ", "-", "+"):
            hunks[-1][3].append(line)
    if last is not None:  # the reply ends in a new file: its own last newline, not a blank line
        new_files[last].pop()
    if not hunks:
        return bool(new_files)
    for path, target, start, body in hunks:
        old = [x[1:] for x in body if x[0] in " -"]
        new = [x[1:] for x in body if x[0] in " +"]
        if path == "/dev/null":
            new_files.setdefault(target, []).extend(new)
            continue
        if target == "/dev/null":
            new_files[path] = None
            continue
        # the diff's three context lines may lie outside the region shown: drop what is unseen
        while (hit := _find(regions, path, old)) is None and body and (body[0][0] == " " or body[-1][0] == " "):
            end = 0 if body[0][0] == " " else -1
            body.pop(end)
            old, new = [x[1:] for x in body if x[0] in " -"], [x[1:] for x in body if x[0] in " +"]
            start += end == 0
        if hit is None and not old:  # a pure insertion: before old line `start`
            r = next((r for r in regions if r.path == path and r.lo <= start <= r.lo + len(r.lines)), None)
            hit = (r, start - r.lo) if r else None
        if hit is None:
            return False
        r, at = hit
        r.lines[at:at + len(old)] = new
    return True


_APPLY = {"search_replace": _search_replace, "region": _region, "diff": _diff}


def result(instruction: str, reply: str, fmt: str) -> str | None:
    """The code a reply in `fmt` makes of what the prompt shows: each shown region after the
    edit, then each new file; None when the reply does not parse or an edit does not apply."""
    if fmt not in FORMATS:
        raise ValueError(f"target format {fmt!r}: expected one of {FORMATS}")
    regions, new_files = shown(instruction), {}
    if not _APPLY[fmt](regions, reply, new_files):
        return None
    return _render(regions, new_files)


def before(instruction: str) -> str:
    """The code the prompt shows, in `result`'s layout (no edit made)."""
    return _render(shown(instruction), {})


def _render(regions: list[Shown], new_files: dict) -> str:
    parts = [f"--- {r.path} (from line {r.lo})\n" + "\n".join(r.lines) for r in regions]
    parts += [f"--- {p} (deleted)" if lines is None else f"--- {p} (new file)\n" + "\n".join(lines)
              for p, lines in sorted(new_files.items())]
    return "\n".join(parts)


def edit_lines(old: str, new: str) -> list[str]:
    """The lines a change removes (-) and adds (+), without context."""
    return [line for line in difflib.unified_diff(old.split("\n"), new.split("\n"), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("--- ", "+++ "))]


def edit_similarity(old: str, new: str | None, truth: str) -> float:
    """How close the edit that turned `old` into `new` (`result`s) is to the true one: difflib's
    ratio of their removed and added lines; 0 when the reply makes no edit or does not apply."""
    made = edit_lines(old, new) if new is not None else []
    if not made:
        return 0.0
    return difflib.SequenceMatcher(None, "\n".join(made), "\n".join(edit_lines(old, truth)),
                                   autojunk=False).ratio()
