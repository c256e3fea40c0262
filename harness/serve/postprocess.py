"""Code-completion post-processing: turn a model's raw continuation into what an editor inserts.

A raw completion usually runs on past the code the user wanted: into the next function, into a
copy of the code after the cursor, or indented as if the cursor were somewhere else. Editors'
completion engines (Copilot, Tabby, Continue) trim it with the same few rules, applied here:

- the cursor's indentation: at a cursor that already has its indentation, a model often
  re-emits it; the first line is moved to the cursor's column and the others keep their
  indentation relative to it;
- stop at the next top-level definition: inside an indented block, a line at column 0 leaves
  the block; at the top level, a new `def`/`class`/decorator/main guard starts the next unit;
- drop lines that repeat the suffix: the model often regenerates the code after the cursor;
- a cursor in the middle of a line (code follows it on that line) completes that line only.

No library does this for arbitrary models (it lives inside each editor plugin), hence this module.
The rules are pure functions of (prefix, suffix, text), so the server can also check them while
generating and stop as soon as the completion is over (`Completion.ended`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line at column 0 that starts the next top-level unit.
TOP_LEVEL = re.compile(r"(?:(?:async\s+)?def\s|class\s|@|if\s+__name__\s*==)")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


@dataclass(frozen=True)
class Cursor:
    """Where the completion goes, read off the text around it."""

    indent: str          # leading whitespace of the cursor's line
    at_line_start: bool  # only indentation precedes the cursor on its line
    line_rest: str       # code after the cursor on the same line ("" when none)
    suffix_line: str     # the suffix's next non-blank line, stripped ("" when none or no code)

    @classmethod
    def of(cls, prefix: str, suffix: str = "") -> Cursor:
        line = prefix.rsplit("\n", 1)[-1]
        rest, _, after = suffix.partition("\n")
        following = next((s.strip() for s in after.split("\n") if s.strip()), "")
        if not any(c.isalnum() for c in following):  # a lone bracket says nothing
            following = ""
        return cls(_indent(line), not line.strip(), rest.strip(), following)


@dataclass(frozen=True)
class Completion:
    text: str
    ended: bool  # a rule cut the text: generating more tokens cannot change it


def _reindent(lines: list[str], cur: Cursor) -> list[str]:
    """At a cursor that already has its indentation, a first line that brings its own
    indentation is moved to the cursor's column, and the lines after it by the same amount."""
    first = lines[0]
    if not cur.at_line_start or not first.strip() or not _indent(first):
        return lines
    delta = len(cur.indent) - len(_indent(first))
    out = [first.lstrip(" \t")]
    for line in lines[1:]:
        if not line.strip():
            out.append(line)
        elif delta >= 0:
            out.append(" " * delta + line)
        else:
            out.append(line[min(-delta, len(_indent(line))):])
    return out


def _boundary(lines: list[str], cur: Cursor) -> int | None:
    """Index of the first line that starts the next top-level unit, if any."""
    in_block = bool(cur.indent)
    # decorators typed at a top-level cursor belong with the definition that follows them
    decorating = cur.at_line_start and not in_block and lines[0].startswith("@")
    for i, line in enumerate(lines[1:], start=1):
        if not line.strip() or line[0] in " \t":
            continue
        if in_block:
            return i
        if decorating:
            decorating = line.startswith("@")
            continue
        if TOP_LEVEL.match(line):
            return i
    return None


def _suffix_repeat(lines: list[str], cur: Cursor, final: bool) -> int | None:
    """Index of the first complete line that repeats the line after the cursor: from there on
    the model is rewriting code that is already in the file."""
    if not cur.suffix_line:
        return None
    complete = len(lines) if final else len(lines) - 1  # the last line may still grow
    start = 0 if cur.at_line_start else 1
    return next((i for i in range(start, complete) if lines[i].strip() == cur.suffix_line), None)


def clean(text: str, cur: Cursor, final: bool = True) -> Completion:
    """Apply the rules to a raw completion. `final=False` while the text may still grow: the
    last line is then treated as unfinished, so only decisions that more text cannot undo count,
    and cleaning the text at the moment `ended` turns true gives what cleaning any longer
    continuation of it would."""
    if cur.line_rest:  # mid-line cursor: complete this line only, without its end again
        line, newline, _ = text.partition("\n")
        if (newline or final) and line.rstrip().endswith(cur.line_rest):
            line = line.rstrip()[: -len(cur.line_rest)]
        return Completion(line, bool(newline))
    lines = _reindent(text.split("\n"), cur)
    cuts = [c for c in (_boundary(lines, cur), _suffix_repeat(lines, cur, final)) if c is not None]
    if not cuts:
        return Completion("\n".join(lines), False)
    kept = lines[: min(cuts)]
    while kept and not kept[-1].strip():
        kept.pop()
    return Completion("\n".join(kept), True)
