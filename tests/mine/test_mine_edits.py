"""A reply applied to the code its prompt shows (edits.py): the true reply in each target format
makes the same code, so the formats can be compared by the code a model's reply makes."""

from __future__ import annotations

import pytest
from conftest import distinct_function, mine_repo

from harness.mine import edits
from harness.mine.pairs import FORMATS


@pytest.fixture
def history(repo_builder):
    """An edit inside a function, a change that adds a file and deletes another, and a rename
    with an edit, each a commit whose message reads as an instruction."""
    b = repo_builder()
    b.commit("Add the ledger and the report modules",
             {"pkg/ledger.py": distinct_function("open_ledger", 14) + distinct_function("settle_invoice", 14),
              "pkg/report.py": distinct_function("render_report", 14),
              "pkg/legacy.py": distinct_function("old_totals", 20)}, day=1)
    src = (b.path / "pkg/ledger.py").read_text().split("\n")
    i = next(k for k, x in enumerate(src) if x.startswith("def settle_invoice")) + 6
    src[i] = "    adjusted = round(value * 1.19, 2)\n" + src[i]
    b.commit("Apply the VAT rate when settling an invoice", {"pkg/ledger.py": "\n".join(src)}, day=2,
             append=False)
    b.commit("Replace the legacy totals with a summary module",
             {"pkg/summary.py": distinct_function("summarise_totals", 20)}, day=3, delete=("pkg/legacy.py",))
    report = (b.path / "pkg/report.py").read_text().replace("(value)", "(value, fmt='md')", 1)
    b.commit("Move the report renderer to render.py and let it take a format",
             {"pkg/render.py": report}, day=4, rename={"pkg/report.py": "pkg/render.py"}, append=False)
    return b


def mined(tmp_path, history, fmt):
    _, records, _ = mine_repo(tmp_path, history.path, "data.mine.min_changed_lines=1", "data.mine.test_fraction=0",
                              f"data.mine.target_format={fmt}", name=fmt)
    return {r["instruction"]: r for r in records if r["kind"] == "commit"}


def test_the_true_reply_makes_the_same_code_in_every_format(tmp_path, history):
    by_format = {fmt: mined(tmp_path, history, fmt) for fmt in FORMATS}
    assert {len(v) for v in by_format.values()} == {4}  # the first commit adds files
    for instruction in by_format["region"]:
        made = {fmt: edits.result(instruction, by_format[fmt][instruction]["response"], fmt) for fmt in FORMATS}
        assert made["region"] is not None and made["search_replace"] == made["region"] == made["diff"]
        assert made["region"] != edits.before(instruction)
    vat = next(i for i in by_format["region"] if i.startswith("Apply the VAT rate"))
    assert "    adjusted = round(value * 1.19, 2)" in edits.result(vat, by_format["region"][vat]["response"], "region")
    replaced = next(i for i in by_format["diff"] if i.startswith("Replace the legacy totals"))
    made = edits.result(replaced, by_format["diff"][replaced]["response"], "diff")
    assert "--- pkg/legacy.py (deleted)" in made and "--- pkg/summary.py (new file)\n\n\ndef summarise_totals" in made


def test_a_model_reply_is_scored_by_the_edit_it_makes(tmp_path, history):
    records = mined(tmp_path, history, "search_replace")
    instruction = next(i for i in records if i.startswith("Apply the VAT rate"))
    truth = edits.result(instruction, records[instruction]["response"], "search_replace")
    old = edits.before(instruction)
    assert edits.edit_similarity(old, truth, truth) == 1.0
    # a reply that changes nothing, or whose SEARCH block is not in the code shown, scores 0
    assert edits.edit_similarity(old, old, truth) == 0.0
    wrong = "pkg/ledger.py\n<<<<<<< SEARCH\nnot in the file\n=======\nx = 1\n>>>>>>> REPLACE\n"
    assert edits.result(instruction, wrong, "search_replace") is None
    assert edits.edit_similarity(old, None, truth) == 0.0
    assert edits.result(instruction, "I would apply the VAT rate.", "search_replace") is None
    # the right line at a slightly different rate: most of the way there
    near = records[instruction]["response"].replace("1.19", "1.2")
    assert 0.8 < edits.edit_similarity(old, edits.result(instruction, near, "search_replace"), truth) < 1.0
