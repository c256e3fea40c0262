"""The pair a model learns from a change (CommitPackFT grade): the instruction and the current
code of what changes → the new code of that region, in the token budget.

The prompt holds what a developer has when asked for the change: the request, and for each
changed file the code before the change (the enclosing function or class of a Python hunk,
else a window of lines around it), headed by its path and line numbers. The target is one of
`FORMATS`, set by `data.mine.target_format`:

- `search_replace`: per hunk, a SEARCH block (the hunk's old lines, all shown in the prompt)
  and its REPLACE block, the edit format aider applies; a new file has an empty SEARCH.
- `region`: the new code of every region shown in the prompt (OctoPack's CommitPackFT pairs
  the old and new contents of a file; a region is that, cut to what fits).
- `diff`: the unified diff, as before (kept for comparison; its unseen lines are the problem
  this module exists for).

A change that does not fit is shown with less context first (function → window of
`context_lines` → the hunk's own three lines), then split per file and per region, with the
request naming the part ("the part of this change in `path`"), so the message still applies;
what still does not fit is dropped and counted. Nothing is truncated.

Python's enclosing function is found from indentation, not `ast.parse`: parsing every old
version of every changed file cost more than the rest of mining (a 3,000-line module is ~20 ms
to parse), and a region only needs the lines of the innermost `def`/`class` block.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.mine.classes import DOCS, RELEASE_NOTES, TESTS
from harness.mine.filters import path_skipped
from harness.mine.records import FileDiff, Hunk, hunks, unified_diff

FORMATS = ("search_replace", "region", "diff")
BOOKKEEPING = (*RELEASE_NOTES, "AUTHORS*", "CONTRIBUTORS*", "LICENSE*")
_CODE = (".py", ".pyi", ".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp",
         ".hpp", ".cs", ".rb", ".php", ".swift", ".scala", ".sh", ".sql", ".lua", ".r", ".jl")
HEADER = "\n\nThe code before the change:\n"
_DEF = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+\w")
# fallback contexts after the first: a window of this many lines, then the hunk's own context
_NARROW = 8


@dataclass
class Region:
    """Old lines [lo, hi] (1-based, inclusive) of one file and the hunks inside them."""

    lo: int
    hi: int
    hunks: list[Hunk] = field(default_factory=list)


@dataclass
class Pair:
    """One record's request (instruction without the code), context (the code before) and
    response, the files it covers, and its lines added/deleted."""

    request: str
    context: str
    response: str
    files: list[str]
    added: int
    deleted: int

    @property
    def size(self) -> int:
        return len(self.request) + len(self.context) + len(self.response)


def _old_range(h: Hunk) -> tuple[int, int]:
    """(first, last) old line of a hunk; a pure insertion has last = first - 1."""
    return (h.old_start, h.old_start + h.old_len - 1) if h.old_len else (h.old_start + 1, h.old_start)


def _changed(h: Hunk) -> tuple[int, int]:
    """The old lines a hunk changes (its '-' lines, or the two lines around an insertion)."""
    n, lines = h.old_start if h.old_len else h.old_start + 1, []
    for line in h.lines:
        if line[:1] == "-":
            lines.append(n)
        elif line[:1] == "+":
            lines += [n - 1, n]
        if line[:1] in (" ", "-"):
            n += 1
    lo, hi = _old_range(h)
    lines = [x for x in lines if lo <= x <= hi] or [lo, max(lo, hi)]
    return min(lines), max(lines)


class _Indents:
    """Each line's indentation (-1 for a blank line), computed for the lines looked at only:
    a hunk's enclosing block is near it, and whole-file indentation of large modules (click's
    core.py: 3,000 lines) was a fifth of mining's time."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.known, self.ends = lines, {}, {}

    def __getitem__(self, k: int) -> int:
        if k not in self.known:
            x = self.lines[k]
            self.known[k] = len(x) - len(x.lstrip()) if x.strip() else -1
        return self.known[k]

    def end(self, at: int) -> int:
        """The last line (1-based) of the block headed by line `at`: the last non-blank line
        before the next one indented no deeper than the header. Remembered: every hunk in a
        class, and every view and part of a change, asks again for the same headers."""
        if at not in self.ends:
            lines, i, end = self.lines, self[at - 1], at
            for k in range(at, len(lines)):  # a plain loop: most of mining's Python time was here
                x = lines[k]
                rest = x.lstrip()
                if rest:
                    if len(x) - len(rest) <= i:
                        break
                    end = k + 1
            self.ends[at] = end
        return self.ends[at]


def enclosing(lines: list[str], lo: int, hi: int, ind: _Indents | None = None) -> tuple[int, int] | None:
    """Old lines (first, last) of the innermost Python `def`/`class` block holding lines
    lo..hi (1-based), decorators included; None at module level."""
    ind = _Indents(lines) if ind is None else ind
    body = [i for i in (ind[k] for k in range(lo - 1, min(hi, len(lines)))) if i >= 0]
    need = min(body) if body else 0  # a block holding these lines has its header further left
    for at in range(min(lo, len(lines)), 0, -1):
        i = ind[at - 1]
        if i < 0:
            continue
        if (i < need or (at == lo and i <= need)) and _DEF.match(lines[at - 1]) and ind.end(at) >= hi:
            end = ind.end(at)
            while at > 1 and ind[at - 2] == i and lines[at - 2].lstrip().startswith("@"):
                at -= 1
            return at, end
        if at < lo:
            need = min(need, i)
        if need == 0:
            return None
    return None


def regions(f: FileDiff, old: list[str] | None, level: int, context_lines: int,
            ind: _Indents | None = None) -> list[Region]:
    """The old-file regions shown for `f` at context `level` (0: the enclosing Python function
    or class, else ±context_lines; 1: ±_NARROW lines; 2: the hunk's own lines), merged where
    they overlap; each holds its hunks whole."""
    hs = hunks(f.diff)
    n = len(old) if old is not None else 0
    if ind is None and old is not None and level == 0 and f.path.endswith(".py"):
        ind = _Indents(old)
    spans = []
    for h in hs:
        a, b = _old_range(h)
        if old is None or level == 2:
            lo, hi = a, b
        else:
            c, d = _changed(h)
            pad = context_lines if level == 0 else min(_NARROW, context_lines)
            box = enclosing(old, c, d, ind) if level == 0 and f.path.endswith(".py") else None
            lo, hi = box if box else (c - pad, d + pad)
            lo, hi = max(1, min(lo, a)), min(max(n, b), max(hi, b))
        spans.append((lo, hi, h))
    out: list[Region] = []
    for lo, hi, h in sorted(spans, key=lambda s: (s[0], s[1])):
        if out and lo <= out[-1].hi + 1:
            out[-1].hi = max(out[-1].hi, hi)
            out[-1].hunks.append(h)
        else:
            out.append(Region(lo, hi, [h]))
    return out


def _new_text(old: list[str], r: Region) -> tuple[int, list[str]]:
    """(first new line number, new lines) of region r: its old lines with its hunks applied."""
    out, at = [], r.lo
    for h in r.hunks:
        a, b = _old_range(h)
        out += old[at - 1:a - 1] + h.after
        at = b + 1
    out += old[at - 1:r.hi]
    h = r.hunks[0]  # lines before the region moved by what the hunks above it did
    shift = (h.new_start if h.new_len else h.new_start + 1) - _old_range(h)[0]
    return r.lo + shift, out


def apply_all(old: list[str], hs: list[Hunk]) -> list[str]:
    """The whole new file: `old` lines with every hunk applied."""
    return _new_text(old, Region(1, len(old), hs))[1] if hs else old


def _block(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


@dataclass
class _FileView:
    """One file's request-side and response-side text at one context level."""

    context: str
    response: str


def _view(f: FileDiff, old: list[str] | None, level: int, context_lines: int, fmt: str,
          ind: _Indents | None) -> _FileView:
    """What one file shows and answers at one context level (not yet redacted)."""
    path = f.path
    if f.new_path is None:  # deleted: nothing to write but the fact
        return _FileView("", f"--- {f.old_path} (deleted)\n")
    if f.old_path is None or old is None:  # a new file (or an old one we could not read)
        new = _block([line for h in hunks(f.diff) for line in h.after])
        if f.old_path is None:
            body = (f"{path}\n<<<<<<< SEARCH\n=======\n{new}>>>>>>> REPLACE\n" if fmt == "search_replace"
                    else f"--- {path} (new file)\n{new}")
            return _FileView("", body)
    rs = regions(f, old, level, context_lines, ind)
    shown, response = [], []
    moved = f" (renamed from {f.old_path})" if f.old_path != f.new_path else ""
    for r in rs:
        before = old[r.lo - 1:r.hi] if old is not None else [x for h in r.hunks for x in h.before]
        shown.append(f"--- {f.old_path} (lines {r.lo}-{r.hi})\n" + _block(before))
        if fmt == "region" and old is not None:
            start, new = _new_text(old, r)
            end = start + len(new) - 1
            response.append(f"--- {path} (lines {start}-{max(start, end)}){moved}\n" + _block(new))
        elif fmt == "region":
            response += [f"--- {path} (lines {h.new_start}-{h.new_start + max(h.new_len, 1) - 1}){moved}\n"
                         + _block(h.after) for h in r.hunks]
        elif fmt == "search_replace":
            response += [f"{path}{moved}\n<<<<<<< SEARCH\n{_block(h.before)}=======\n{_block(h.after)}"
                         ">>>>>>> REPLACE\n" for h in r.hunks]
    if fmt == "diff":
        response = [unified_diff([f])]
    return _FileView("".join(shown), "".join(response))


def _compose(request: str, views: list[_FileView], files: list[FileDiff]) -> Pair:
    context = "".join(v.context for v in views)
    return Pair(request, HEADER + context if context else "", "".join(v.response for v in views),
                [f.path for f in files], sum(f.added for f in files), sum(f.deleted for f in files))


def pairs(request: str, files: list[FileDiff], fit_chars: int, context_lines: int, fmt: str,
          redact: Callable[[str, str], str], max_parts: int,
          over_budget: str = "drop") -> tuple[list[Pair], str]:
    """The pairs of one change and how it was cut: "whole", "split" (per file or region, at
    most `max_parts`), "too_long" (nothing fits: no pair) or, with `over_budget="keep"`,
    "over_budget": the change whole with the least context, longer than the budget (the
    format stage truncates it)."""
    if fmt not in FORMATS:
        raise ValueError(f"target format {fmt!r}: expected one of {FORMATS}")
    # pairs are cut from the code as it is, and only the chosen ones are redacted (once each:
    # redacting every view tried, or whole old files, was most of mining's time on a real
    # history); a placeholder's length differs from its secret's by a few characters
    old: dict[int, list[str] | None] = {}
    inds: dict[int, _Indents] = {}
    for f in files:
        text = f.before() if f.before is not None and f.old_path else None
        lines = text.split("\n") if text is not None else None
        old[id(f)] = lines[:-1] if lines and not lines[-1] else lines  # a final newline
    budget = fit_chars - 40  # the chat template's own text around the turns
    views: dict[tuple[int, int], _FileView] = {}

    def view(f: FileDiff, level: int) -> _FileView:
        if (id(f), level) not in views:
            lines = old[id(f)]
            if lines is not None and f.path.endswith(".py") and id(lines) not in inds:
                inds[id(lines)] = _Indents(lines)
            ind = inds.get(id(lines)) if lines is not None else None
            views[id(f), level] = _view(f, lines, level, context_lines, fmt, ind)
        return views[id(f), level]

    def best(req: str, fs: list[FileDiff]) -> Pair | None:
        for level in range(3):
            p = _compose(req, [view(f, level) for f in fs], fs)
            if p.size <= budget:
                return p
            if fmt != "region" and len(p.request) + len(p.response) > budget:
                return None  # its edits (the same at every level) do not fit with no context
        return None

    def scrubbed(p: Pair) -> Pair:
        where = p.files[0] if p.files else "message.txt"
        p.context = redact(p.context, where) if p.context else ""
        p.response = redact(p.response, where) if fmt == "region" else p.response  # else from the redacted diff
        return p

    if whole := best(request, files):
        return [scrubbed(whole)], "whole"
    parts: list[Pair] = []
    # a freed part's id() would be reused by the next one, which would then be shown the
    # freed one's cached view (output that depended on the batch a commit was mined in)
    subs: list[FileDiff] = []
    # the code first, then its tests, then the rest (docs, config): `max_parts` cuts the last;
    # a changelog or AUTHORS entry alone does not follow from the message: not a part
    # (nor is a pure rename or an empty new file: a part with nothing to write)
    substantive = [f for f in files if not path_skipped(f.path, BOOKKEEPING) and f.added + f.deleted] or files
    removed = [(f.old_path, run) for f in files if f.old_path for run in _removed_runs(f.diff)]
    for f in sorted(substantive, key=lambda f: (path_skipped(f.path, DOCS) or not f.path.endswith(_CODE),
                                                path_skipped(f.path, TESTS))):
        if len(parts) >= max_parts:
            break
        req = f"{request}\n\nMake the part of this change that belongs in `{f.path}`." + moved_here(f, removed)
        if p := best(req, [f]):
            parts.append(p)
            continue
        if f.old_path is None or old[id(f)] is None:
            continue
        # per region, and a region that does not fit (two hunks of one function) per hunk
        todo = regions(f, old[id(f)], 0, context_lines, inds.get(id(old[id(f)])))
        while todo and len(parts) < max_parts:
            r = todo.pop(0)
            sub = FileDiff(f.old_path, f.new_path, _region_diff(r), *_counts(r), f.old_blob, f.before)
            subs.append(sub)  # alive until the end: `views` and `old` are keyed by id()
            old[id(sub)] = old[id(f)]
            where = f"lines {r.lo}-{r.hi} of `{f.old_path}`"
            req = f"{request}\n\nMake the part of this change that belongs in {where}." + moved_here(sub, removed)
            if p := best(req, [sub]):
                parts.append(p)
            elif len(r.hunks) > 1:
                todo[:0] = [Region(*_old_range(h)[:1], max(_old_range(h)), [h]) for h in r.hunks]
    if not parts and over_budget == "keep":
        return [scrubbed(_compose(request, [view(f, 2) for f in files], files))], "over_budget"
    if not parts:
        return [], "too_long"
    return [scrubbed(p) for p in parts], "split"


def _removed_runs(diff: str) -> list[list[str]]:
    """Each run of consecutive '-' lines of a diff."""
    runs: list[list[str]] = []
    for h in hunks(diff):
        run: list[str] = []
        for line in [*h.lines, " "]:
            if line[:1] == "-":
                run.append(line[1:])
            elif run:
                runs.append(run)
                run = []
    return runs


def moved_here(part: FileDiff, removed: list[tuple[str, list[str]]]) -> str:
    """For a part of a split change whose added lines are mostly code the change removes
    elsewhere (a function moved to a new module, methods reordered), that removed code as it
    was: without it the reply is code the prompt never showed ("Move to_native_string to
    _internal_utils.py" on requests). `removed`: (old path, run of '-' lines) of the whole
    change. "" for any other part."""
    lines = [line for h in hunks(part.diff) for line in h.lines]
    added = {s for line in lines if line[:1] == "+" and len(s := line[1:].strip()) > 3}
    if len(added) < 3:
        return ""
    own = {line[1:] for line in lines if line[:1] == "-"}
    sources = [(path, run) for path, run in removed if not (path == part.old_path and set(run) <= own)
               and sum(line.strip() in added for line in run) >= 3]
    if 2 * len(added & {line.strip() for _, run in sources for line in run}) < len(added):
        return ""
    return "".join(f"\n\nThe code it moves here, as it was in `{path}`:\n{_block(run)}" for path, run in sources)


_META = re.compile(r"^(--- .* \((lines \d+-\d+|new file|deleted)\)( \(renamed from .*\))?|"
                   r"<<<<<<< SEARCH|=======|>>>>>>> REPLACE)$")


def code_of(response: str) -> str:
    """A response without its paths, line numbers and edit markers, for dedup: the same
    change made in another file (or at other lines) is the same change."""
    lines = response.split("\n")
    drop = {i for i, line in enumerate(lines) if _META.match(line)}
    drop |= {i - 1 for i, line in enumerate(lines) if line == "<<<<<<< SEARCH"}  # its path
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def _region_diff(r: Region) -> str:
    return "".join(f"@@ -{h.old_start},{h.old_len} +{h.new_start},{h.new_len} @@\n" + _block(h.lines)
                   for h in r.hunks)


def _counts(r: Region) -> tuple[int, int]:
    return (sum(line[:1] == "+" for h in r.hunks for line in h.lines),
            sum(line[:1] == "-" for h in r.hunks for line in h.lines))
