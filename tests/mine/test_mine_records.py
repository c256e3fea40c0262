"""Records from a commit's files: the hunks' lines in the old file frame the code shown before."""

from __future__ import annotations

import pytest

from harness.mine.records import hunks, old_spans


def test_old_spans_are_the_old_lines_of_each_hunk():
    diff = ("@@ -1,3 +1,4 @@ def top():\n keep\n+new\n keep\n keep\n"
            "@@ -10 +11,0 @@\n-gone\n"
            "@@ -20,2 +20,2 @@ class X:\n-a = 1\n+a = 2\n c\n")
    assert old_spans(diff) == [(h.old_start, h.old_len) for h in hunks(diff)] == [(1, 3), (10, 1), (20, 2)]


@pytest.mark.parametrize("n_lines", [7, 60])  # 7: the first window is the hunk, the bound is tight
def test_old_files_are_read_only_when_the_code_before_may_fit(n_lines):
    import difflib

    from harness.mine.records import FileDiff, before_may_fit, build

    old = [f"    total_{i} = compute_step({i}, value) + {i}" for i in range(n_lines)]
    mid = n_lines // 2
    new = [*old[:mid], f"    total_{mid} = compute_step({mid}, value) - 1", *old[mid + 1:]]
    hunk = "".join(list(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new]))[2:])
    shown, pruned = 0, 0
    for fit_chars in range(0, 4000, 5):
        f = FileDiff("m.py", "m.py", hunk, 1, 1, old_blob="b", before=lambda: "\n".join(old))
        args = ("commit", "git:commit", "Fix the off-by-one in the middle step", None, [f], fit_chars, 20)
        _, context, response = build(*args[:-2], fit_chars, 20, lambda text, path: text)
        may = before_may_fit(*args)
        assert may or not context  # never skipped where it would have been shown
        shown += bool(context)
        pruned += not may and fit_chars > len(response) + 200
    assert shown and pruned  # the bound decides both ways in this range
