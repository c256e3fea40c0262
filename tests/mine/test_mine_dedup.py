"""Exact and near duplicates, across the train/test boundary, and HumanEval/MBPP contamination."""

from __future__ import annotations

from conftest import RepoBuilder, distinct_function, make_cfg

from harness.eval.benchmarks import load_humaneval, load_mbpp
from harness.io import read_jsonl
from harness.mine import dedup
from harness.mine.stage import run


def test_a_pasted_function_matches_its_source_through_the_diff_markup():
    src = distinct_function("rate_limit", 20)
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1,0 +1,25 @@\n" + "".join(f"+{line}\n" for line in src.split("\n"))
    assert dedup.shingles(diff, 5) == dedup.shingles(src, 5)
    other = distinct_function("rate_window", 20)
    a, b = (dedup.minhash(dedup.signature(t, 128, 5)[0], 128) for t in (src, other))
    assert a.jaccard(dedup.minhash(dedup.signature(diff, 128, 5)[0], 128)) == 1.0 and a.jaccard(b) < 0.2


def test_benchmark_solutions_are_found_inside_larger_text():
    bench = dedup.Benchmarks(ngram=5, threshold=0.7)
    he = load_humaneval()[7]
    solution = he.reference.split(he.prompt, 1)[-1]
    host = distinct_function("unrelated", 40) + he.reference + distinct_function("other", 40)
    assert bench.contained(dedup.shingles(host, 5)) == he.task_id
    mbpp = load_mbpp(split="all")[3]
    assert bench.contained(dedup.shingles(mbpp.reference + distinct_function("x", 30), 5)) == mbpp.task_id
    assert bench.contained(dedup.shingles(distinct_function("clean", 60), 5)) is None
    assert len(solution) > 0


def test_duplicates_go_test_never_repeats_train_and_benchmarks_stay_out(tmp_path):
    b = RepoBuilder(tmp_path / "svc")
    base = distinct_function("settle_invoice", 26)
    for i in range(8):
        b.commit(f"Add the settlement step {i} for invoices", {f"svc/s{i}.py": distinct_function(f"step_{i}", 22)},
                 day=1 + i)
    b.commit("Add invoice settlement to the billing module", {"svc/billing.py": base}, day=10)
    # the same change again, to another file: an exact duplicate of the change
    b.commit("Copy invoice settlement into the legacy module", {"svc/legacy.py": base}, day=11)
    # nearly the same change: one constant differs
    near = base.replace(base.split("\n")[6], base.split("\n")[6] + " + 1")
    b.commit("Add invoice settlement for partners with one more cent", {"svc/partners.py": near}, day=12)
    he = load_humaneval()[12]
    b.commit("Add a helper to pick the longest string", {"svc/strings.py": "\n\n" + he.reference}, day=13)
    for i in range(8, 11):
        b.commit(f"Add the settlement step {i} for invoices", {f"svc/s{i}.py": distinct_function(f"step_{i}", 22)},
                 day=6 + i)
    # after the cutoff: the billing change once more, with a new name (test must not repeat train)
    port = base.replace(base.split("\n")[6], base.split("\n")[6] + " + 2")
    b.commit("Port invoice settlement to the new ledger", {"svc/ledger.py": port}, day=20)
    out = tmp_path / "out"
    out.mkdir()
    stats = run(make_cfg(tmp_path / "run", b.path, ["data.mine.test_cutoff=2024-01-17"], tmp_path / "cache"), out)
    records = list(read_jsonl(out / "records.jsonl"))
    subjects = {r["instruction"].split("\n")[0] for r in records if r["kind"] == "commit"}
    dropped = stats["sources"]["commit"]["dropped"]
    assert dropped == {"exact_duplicate": 1, "near_duplicate": 1, "near_duplicate_of_train": 1,
                       "contaminated": 1}
    assert "Add invoice settlement to the billing module" in subjects  # the first one is kept
    assert not subjects & {"Copy invoice settlement into the legacy module",
                           "Add invoice settlement for partners with one more cent",
                           "Port invoice settlement to the new ledger",
                           "Add a helper to pick the longest string"}
    # the commit, the file in the train FIM tree and the docstring pair of the pasted function
    assert stats["decontaminated"] == {"HumanEval": 3}
    assert stats["sources"]["fim_source"]["dropped"] == {"exact_duplicate": 1, "contaminated": 1}
    assert stats["sources"]["docstring"]["dropped"]["contaminated"] == 1
    assert he.reference.split("\n")[-2] not in "".join(r.get("content", "") + r.get("response", "")
                                                        for r in records if r["split"] == "train")
