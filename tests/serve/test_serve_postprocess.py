"""Code-completion post-processing: what an editor inserts at the cursor."""

from __future__ import annotations

from harness.serve.postprocess import Cursor, clean


def complete(prefix: str, raw: str, suffix: str = "") -> str:
    return clean(raw, Cursor.of(prefix, suffix)).text


def test_stops_at_the_next_top_level_definition_inside_a_function():
    raw = "return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    assert complete("def add(a, b):\n    ", raw) == "return a + b"


def test_a_column_zero_line_leaves_the_block_the_cursor_is_in():
    raw = "y = x * 2\n    return y\nprint(f(3))\n"
    assert complete("def f(x):\n    ", raw) == "y = x * 2\n    return y"


def test_at_the_top_level_only_a_new_definition_stops_the_completion():
    raw = "import re\nPATTERN = re.compile('x')\n\nclass Parser:\n    pass\n"
    assert complete("import os\n", raw) == "import re\nPATTERN = re.compile('x')"
    raw = "def f():\n    return 1\n\n\nclass X:\n    pass"
    assert complete("import os\n\n", raw) == "def f():\n    return 1"


def test_decorators_stay_with_the_definition_they_decorate():
    raw = "@cache\n@trace\ndef f():\n    return 1\n\n@cache\ndef g():\n    return 2\n"
    assert complete("from functools import cache\n\n", raw) == "@cache\n@trace\ndef f():\n    return 1"


def test_the_main_guard_ends_a_top_level_completion():
    raw = "def main():\n    run()\n\nif __name__ == '__main__':\n    main()\n"
    assert complete("\n", raw) == "def main():\n    run()"


def test_reemitted_indentation_is_moved_to_the_cursor_column():
    # the prefix already indents the cursor by 4; the model indents its first line again
    raw = "    total = 0\n    for v in values:\n        total += v"
    assert complete("def f(values):\n    ", raw) == "total = 0\n    for v in values:\n        total += v"
    # a 2-space model under a 4-space cursor: shifted so its block lines up with the cursor
    raw = "  total = 0\n  for v in values:\n    total += v"
    assert complete("def f(values):\n    ", raw) == "total = 0\n    for v in values:\n      total += v"


def test_indentation_is_left_alone_when_the_cursor_follows_code():
    raw = "\n    return x"
    assert complete("def f(x):", raw) == raw


def test_lines_that_repeat_the_suffix_are_dropped():
    prefix = "def area(w, h):\n    "
    suffix = "\n    return result\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
    raw = "result = w * h\n    return result\n"
    assert complete(prefix, raw, suffix) == "result = w * h"


def test_a_suffix_that_starts_with_a_lone_bracket_cuts_nothing():
    prefix, suffix = "total = add(\n    ", "\n)\n"
    raw = "scale(\n        value,\n    )"  # its ")" closes scale(, not add(
    assert complete(prefix, raw, suffix) == raw


def test_a_mid_line_cursor_completes_that_line_only_without_repeating_its_end():
    prefix, suffix = "total = compute(", ")\nprint(total)\n"
    assert complete(prefix, "values, weights)\nprint(total)\n", suffix) == "values, weights"
    assert complete(prefix, "values, weights\nmore = 1", suffix) == "values, weights"


def test_ended_tells_the_generator_when_more_tokens_cannot_change_the_result():
    cur = Cursor.of("def f(x):\n    ")
    assert not clean("return x", cur, final=False).ended
    assert not clean("return x\n", cur, final=False).ended          # the next line may be indented
    assert not clean("return x\n    ", cur, final=False).ended
    assert clean("return x\nd", cur, final=False).ended             # column 0: the block is over
    top = Cursor.of("\n")
    assert not clean("def f():\n    pass\n\nde", top, final=False).ended  # "del"? "def"? not yet
    assert clean("def f():\n    pass\n\ndef ", top, final=False).ended
    suffix_cur = Cursor.of("def f():\n    ", "\n    return y\n")
    assert not clean("y = 1\n    return y", suffix_cur, final=False).ended  # the line may grow
    assert clean("y = 1\n    return y\n", suffix_cur, final=False).ended
    mid = Cursor.of("total = compute(", ")\n")
    assert not clean("values)", mid, final=False).ended  # "values), extra)" is still possible
    assert clean("values)\n", mid, final=False) == clean("values)\nmore", mid)


def test_cleaning_where_generation_stopped_equals_cleaning_a_longer_generation():
    prefix, suffix = "def f(x):\n    ", "\n    return y\n\n\ndef g():\n    pass\n"
    raw = "y = x + 1\n    return y\n\n\ndef g():\n    pass\n"
    cur = Cursor.of(prefix, suffix)
    stop = next(n for n in range(len(raw) + 1) if clean(raw[:n], cur, final=False).ended)
    assert clean(raw[:stop], cur) == clean(raw, cur) == clean(raw[:stop], cur, final=False)


def test_nothing_to_cut_returns_the_text_unchanged():
    raw = "x = 1\ny = 2\n"
    result = clean(raw, Cursor.of("", ""))
    assert result.text == raw and not result.ended
