"""FIM holes on syntax boundaries: the middle is exactly one complete statement (whole lines)
or one complete expression (part of a line), so the model learns to close what it opens.

Python's own `ast` parser gives exact node spans with no extra dependency; other languages
(and files that do not parse) fall back to line holes (`harness.format.fim.sample_holes`).
"""

from __future__ import annotations

import ast
import random

from harness.format.fim import Hole

# Expressions too small to be a useful completion target.
TRIVIAL = (ast.Name, ast.Constant, ast.Starred)
MIN_EXPR_CHARS = 6


def _spans(content: str, max_middle_lines: int) -> tuple[list[tuple[int, int, int]], list]:
    """(start offset, end offset, first line) of candidate statements and expressions."""
    tree = ast.parse(content)
    lines = content.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col_bytes: int) -> int:  # ast columns count UTF-8 bytes
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col_bytes].decode(errors="ignore"))

    stmts, exprs = set(), set()
    in_fstring = {id(n) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr)
                  for n in ast.walk(j)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr) or id(node) in in_fstring:
            continue
        first, last = node.lineno, node.end_lineno or node.lineno
        if last - first + 1 > max_middle_lines:
            continue
        start, end = offset(first, node.col_offset), offset(last, node.end_col_offset or 0)
        if isinstance(node, ast.stmt):
            head, tail = content[starts[first - 1]:start], content[end:starts[last]]
            if not head.strip() and not tail.strip():  # alone on its lines: take whole lines
                stmts.add((starts[first - 1], starts[last], first))
        elif not isinstance(node, TRIVIAL) and len(content[start:end].strip()) >= MIN_EXPR_CHARS:
            exprs.add((start, end, first))
    return sorted(stmts), sorted(exprs)


def sample_ast_holes(content: str, rng: random.Random, n: int, max_middle_lines: int,
                     context_lines: int) -> list[Hole] | None:
    """Up to `n` distinct holes, each a whole statement or expression (half and half when both
    exist), with `context_lines` lines of context either side. None if `content` does not parse
    as Python."""
    try:
        stmts, exprs = _spans(content, max_middle_lines)
    except (SyntaxError, ValueError):
        return None
    rng.shuffle(stmts)
    rng.shuffle(exprs)
    picked: set[tuple[int, int, int]] = set()
    while len(picked) < n and (stmts or exprs):
        pool = stmts if stmts and (not exprs or rng.random() < 0.5) else exprs
        picked.add(pool.pop())
    lines = content.splitlines(keepends=True)
    holes = []
    for start, end, first in sorted(picked, key=lambda s: s[0]):
        line_start = sum(len(x) for x in lines[:first - 1])
        before = "".join(lines[max(0, first - 1 - context_lines):first - 1])
        last = content.count("\n", 0, end) + (0 if content[end - 1:end] == "\n" else 1)
        after_end = sum(len(x) for x in lines[:min(len(lines), last + context_lines)])
        holes.append(Hole(prefix=before + content[line_start:start], middle=content[start:end],
                          suffix=content[end:after_end], line=first))
    return holes
