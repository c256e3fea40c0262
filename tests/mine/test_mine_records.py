"""Records from a commit's files: the hunks' lines in the old file frame the code shown before."""

from __future__ import annotations

from harness.mine.records import hunks, old_spans


def test_old_spans_are_the_old_lines_of_each_hunk():
    diff = ("@@ -1,3 +1,4 @@ def top():\n keep\n+new\n keep\n keep\n"
            "@@ -10 +11,0 @@\n-gone\n"
            "@@ -20,2 +20,2 @@ class X:\n-a = 1\n+a = 2\n c\n")
    assert old_spans(diff) == [(h.old_start, h.old_len) for h in hunks(diff)] == [(1, 3), (10, 1), (20, 2)]
