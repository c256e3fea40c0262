"""The pair a model learns from: the request and the code it changes → the new code (pairs.py)."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import distinct_function, mine_repo

from harness.mine.pairs import enclosing


def _module(names: list[str], marker: str = "") -> str:
    return "".join(distinct_function(n, 14) for n in names).replace("return", marker + "return", 1) \
        if marker else "".join(distinct_function(n, 14) for n in names)


@pytest.fixture
def edited(repo_builder):
    """A module of three functions; a later commit rewrites a line inside the second."""
    b = repo_builder()
    src = _module(["open_ledger", "settle_invoice", "close_ledger"])
    b.commit("Add the ledger module with its three steps", {"pkg/ledger.py": src}, day=1)
    lines = src.split("\n")
    i = next(k for k, x in enumerate(lines) if x.startswith("def settle_invoice")) + 6
    lines[i] = "    adjusted = round(value * 1.19, 2)\n    " + lines[i].strip() + "  # taxed"
    b.commit("Apply the VAT rate when settling an invoice", {"pkg/ledger.py": "\n".join(lines)}, day=2,
             append=False)
    return b


def _show(repo, rev: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True,
                          check=True).stdout


def _function(text: str, name: str) -> str:
    m = re.search(rf"^def {name}\(.*?(?=^def |\Z)", text, re.M | re.S)
    return m.group(0).rstrip("\n")


def _apply(text: str, response: str) -> str:
    """Apply SEARCH/REPLACE blocks the way an editor would (aider's format)."""
    for search, replace in re.findall(r"<<<<<<< SEARCH\n(.*?)=======\n(.*?)>>>>>>> REPLACE\n", response, re.S):
        assert text.count(search) == 1, "a SEARCH block must match the file exactly once"
        text = text.replace(search, replace)
    return text


@pytest.mark.parametrize("fmt", ["search_replace", "region"])
def test_the_prompt_holds_the_enclosing_function_and_the_target_its_new_code(tmp_path, edited, fmt):
    _, records, _ = mine_repo(tmp_path, edited.path, f"data.mine.target_format={fmt}",
                              "data.mine.min_changed_lines=1", "data.mine.test_fraction=0.01")
    [r] = [r for r in records if r["kind"] == "commit" and r["instruction"].startswith("Apply the VAT")]
    before, after = _show(edited.path, "HEAD~1", "pkg/ledger.py"), _show(edited.path, "HEAD", "pkg/ledger.py")
    request, code = r["instruction"].split("\n\nThe code before the change:\n")
    assert request == "Apply the VAT rate when settling an invoice" and r["format"] == fmt
    # the whole function as it was, with its path and line numbers, and nothing of its neighbours
    header, shown = code.split("\n", 1)
    lo, hi = map(int, re.fullmatch(r"--- pkg/ledger.py \(lines (\d+)-(\d+)\)", header).groups())
    assert shown.rstrip("\n") == "\n".join(before.split("\n")[lo - 1:hi])
    assert _function(before, "settle_invoice") in shown and "def open_ledger" not in shown
    if fmt == "search_replace":  # the blocks apply to the old file and give the new one
        assert r["response"].startswith("pkg/ledger.py\n<<<<<<< SEARCH\n")
        assert _apply(before, r["response"]) == after
    else:  # the new code of the same region, at its new line numbers
        header, new = r["response"].split("\n", 1)
        lo, hi = map(int, re.fullmatch(r"--- pkg/ledger.py \(lines (\d+)-(\d+)\)", header).groups())
        assert new.rstrip("\n") == "\n".join(after.split("\n")[lo - 1:hi])
        assert _function(after, "settle_invoice") in new


def test_a_change_too_large_for_the_budget_is_split_per_file_and_counted(tmp_path, repo_builder):
    b = repo_builder()
    b.commit("Add the ledger and the invoice modules", {
        "pkg/ledger.py": _module(["open_ledger", "close_ledger"]),
        "pkg/invoice.py": _module(["open_invoice", "close_invoice"]),
        "CHANGES.rst": "Version 1.1\n-----------\n\n- Add the ledger and the invoice modules.\n"}, day=1)
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.fit_tokens=500", "data.mine.min_changed_lines=1",
                                  "data.mine.test_fraction=0.01")
    parts = [r for r in records if r["kind"] == "commit"]
    # the code, each file alone; the changelog entry alone would not follow from the message
    assert sorted(f for r in parts for f in r["files"]) == ["pkg/invoice.py", "pkg/ledger.py"]
    for r in parts:  # each part is one file, says which, and fits the budget (500 tokens x 3 chars)
        assert r["instruction"].startswith("Add the ledger and the invoice modules\n\nMake the part of this "
                                           f"change that belongs in `{r['files'][0]}`.")
        assert len(r["instruction"]) + len(r["response"]) <= 1500 and r["part"][1] == 2
    assert len({r["id"] for r in parts}) == 2
    assert stats["sources"]["commit"]["cut"] == {"split_changes": 1, "split_records": 2}
    # nothing fits at all: dropped, and said why; or kept whole with the least context, counted
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.fit_tokens=100", "data.mine.min_changed_lines=1",
                                  "data.mine.over_budget=drop", name="tiny")
    assert stats["sources"]["commit"]["dropped"] == {"too_long": 1}
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.fit_tokens=100", "data.mine.min_changed_lines=1",
                                  "data.mine.over_budget=keep", name="kept")
    [whole] = [r for r in records if r["kind"] == "commit"]
    assert whole["part"] is None and len(whole["files"]) == 3
    assert stats["sources"]["commit"]["cut"] == {"over_budget": 1}


def test_code_moved_between_the_parts_of_a_split_change_is_shown_where_it_lands(tmp_path, repo_builder):
    """A function moved to a new module: the part that adds it shows it as it was, else the
    reply would be code the prompt never showed; the part that removes it needs nothing more."""
    helper = distinct_function("to_native_string", 6)
    before = distinct_function("parse_header", 22) + helper + distinct_function("quote_url", 22)
    b = repo_builder()
    b.commit("Add the header and URL helpers", {"pkg/utils.py": before, "pkg/compat.py": "PY3 = True\n"}, day=1)
    b.commit("Move to_native_string to pkg/_internal.py to avoid a circular import",
             {"pkg/utils.py": before.replace(helper, "\n\nfrom pkg._internal import to_native_string\n"),
              "pkg/_internal.py": '"""Helpers the other modules import."""\n' + helper}, day=2, append=False,
             rename={"pkg/compat.py": "pkg/_compat.py"})
    # 1,020 characters: the change whole does not fit, each file does
    _, records, _ = mine_repo(tmp_path, b.path, "data.mine.fit_tokens=340", "data.mine.min_changed_lines=1",
                              "data.mine.test_fraction=0.01")
    parts = {r["files"][0]: r for r in records if r["kind"] == "commit" and r["part"]}
    assert set(parts) == {"pkg/utils.py", "pkg/_internal.py"}  # the rename alone has nothing to write
    request = parts["pkg/_internal.py"]["instruction"].split("\n\nThe code before the change")[0]
    assert "The code it moves here, as it was in `pkg/utils.py`:\ndef to_native_string(value):" in request
    assert helper.strip() in request and helper.strip() in parts["pkg/_internal.py"]["response"]
    assert "moves here" not in parts["pkg/utils.py"]["instruction"]


def test_enclosing_finds_the_innermost_def_with_its_decorators():
    lines = ["import os", "", "class Ledger:", "    rate = 2", "", "    @property",
             "    def total(self):", "        x = 1", "        return x", "", "    def other(self):",
             "        pass", "", "CONSTANT = 3"]
    assert enclosing(lines, 8, 8) == (6, 9)      # inside a method: the method, decorator included
    assert enclosing(lines, 7, 7) == (6, 9)      # its signature: the same method
    assert enclosing(lines, 4, 4) == (3, 12)     # a class attribute: the class
    assert enclosing(lines, 9, 11) == (3, 12)    # across two methods: the class holding both
    assert enclosing(lines, 14, 14) is None      # module level: a window instead



def test_each_region_of_a_split_file_shows_its_own_code():
    """Edits far apart in one file, each fitting the budget alone with a narrower window:
    every part's prompt shows the code around its own edit (parts were once shown another
    part's code when a freed part's id() was reused: output depended on the batch)."""
    from harness.mine.pairs import HEADER, pairs
    from harness.mine.records import FileDiff

    old = [f"entry_{i} = {i}" for i in range(1, 3001)]
    at = list(range(50, 3000, 100))
    diff = "".join(f"@@ -{n},1 +{n},1 @@\n-{old[n - 1]}\n+entry_{n} = {n} * 2\n" for n in at)
    f = FileDiff("data/table.txt", "data/table.txt", diff, len(at), len(at), "b" * 40,
                 lambda: "\n".join(old) + "\n")
    # 30 lines each side do not fit 640 characters; 8 do
    made, cut = pairs("Double the table", [f], 640, 30, "search_replace", lambda t, _: t, len(at))
    assert cut == "split" and len(made) == len(at)
    for p, n in zip(made, at, strict=True):
        assert p.request.endswith(f"belongs in lines {n - 30}-{n + 30} of `data/table.txt`.")
        assert p.context.startswith(f"{HEADER}--- data/table.txt (lines {n - 8}-{n + 8})\n")
        assert f"entry_{n} = {n} * 2" in p.response
