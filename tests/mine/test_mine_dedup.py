"""Exact and near duplicates, across the train/test boundary, and HumanEval/MBPP contamination."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import RepoBuilder, distinct_function, mine_repo

from harness.benchmarks import load_humaneval, load_mbpp
from harness.mine import dedup


def test_a_pasted_function_matches_its_source_through_the_diff_markup():
    src = distinct_function("rate_limit", 20)
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1,0 +1,25 @@\n" + "".join(f"+{line}\n" for line in src.split("\n"))
    assert dedup.shingles(diff, 5).tolist() == dedup.shingles(src, 5).tolist()
    other = distinct_function("rate_window", 20)
    a, b, c = (dedup.minhash(dedup.signature(dedup.shingles(t, 5), 128)) for t in (src, other, diff))
    assert a.jaccard(c) == 1.0 and a.jaccard(b) < 0.2


def test_tokens_are_words_and_single_punctuation_like_the_regex():
    text = Path(json.__file__).read_text() + "x=ff(1)+0x1F  # ok\n\n\t__init__"
    raw, starts, ends = dedup.token_spans(text)
    assert [bytes(raw[a:b]).decode() for a, b in zip(starts, ends, strict=True)] == re.findall(r"\w+|[^\w\s]", text)
    raw, starts, ends = dedup.token_spans("héllo wörld、ok")  # non-ASCII bytes are word bytes
    assert [bytes(raw[a:b]).decode() for a, b in zip(starts, ends, strict=True)] == ["héllo", "wörld、ok"]


def test_diff_markup_is_skipped():
    diff = ("--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@ def top():\n keep(1)\n-old = a - b\n+new = a + b\n"
            "+++counter\n--- a header again")
    raw, starts, ends = dedup.token_spans(diff)
    tokens = [bytes(raw[a:b]).decode() for a, b in zip(starts, ends, strict=True)]
    assert tokens == ["keep", "(", "1", ")", "old", "=", "a", "-", "b", "new", "=", "a", "+", "b", "+", "+", "counter"]


def test_signatures_are_datasketch_minhashes_bit_for_bit():
    from datasketch import MinHash

    for text in (distinct_function("ledger", 30), "one two", ""):
        sh = dedup.shingles(text, 5)
        m = MinHash(num_perm=128, hashfunc=lambda x: x)  # datasketch's default scheme, affine32
        m.update_batch(list(sh))
        assert dedup.minhash(dedup.signature(sh, 128)).hashvalues.tolist() == m.hashvalues.tolist()


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
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.test_cutoff=2024-01-17")
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


def _datasketch_near_dedup(records, threshold, num_perm):
    """The reference: datasketch's MinHashLSH, one record at a time."""
    from datasketch import MinHashLSH

    lsh, kept, dropped = MinHashLSH(threshold=threshold, num_perm=num_perm), [], []
    for i, r in enumerate(records):
        m = dedup.minhash(r["_sig"])
        if any(dedup.minhash(records[k]["_sig"]).jaccard(m) >= threshold for k in lsh.query(m)):
            dropped.append(r["id"])
            continue
        lsh.insert(i, m)
        kept.append(r["id"])
    return kept, dropped


def test_near_dedup_finds_what_datasketchs_lsh_index_finds():
    import base64
    import random

    rng = random.Random(7)
    words = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(30, 120))) for _ in range(150)]
    for _ in range(150):  # edits of earlier texts, from tiny to large
        base = rng.choice(texts).split()
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            base[rng.randrange(len(base))] = rng.choice(words)
        texts.append(" ".join(base))
    records = [{"id": i, "split": "train", "_sig": base64.b64encode(dedup.signature(dedup.shingles(t, 5), 128)).decode()}
               for i, t in enumerate(texts)]
    kept, drops = dedup.near_dedup(records, 0.85, 128)
    expected_kept, expected_dropped = _datasketch_near_dedup(records, 0.85, 128)
    assert [r["id"] for r in kept] == expected_kept and [r["id"] for r, _ in drops] == expected_dropped
    assert 30 < len(drops) < 120  # the edits straddle the threshold


def test_fingerprints_of_a_batch_equal_each_records_own():
    bench = dedup.Benchmarks(ngram=5, threshold=0.7)
    he = load_humaneval()[7]
    pairs = [(f"Add {name}", "--- a/x.py\n+++ b/x.py\n@@ -1,0 +1,30 @@\n" + distinct_function(name, 30))
             for name in ("ledger", "invoice", "refund", "audit") * 20]  # more than one block of shingles
    pairs.insert(5, ("Paste a solution", he.reference))
    one_by_one = [dedup.fingerprint(q, r, 5, 128, bench) for q, r in pairs]
    assert dedup.fingerprints(pairs, 5, 128, bench) == one_by_one
    assert one_by_one[5]["_contaminated"] == he.task_id and one_by_one[6]["_contaminated"] is None
    # records of fewer tokens than a shingle, or none at all
    short = [("", ""), ("fix", "x"), *pairs[:3], ("", "a b")]
    assert dedup.fingerprints(short, 5, 128, bench) == [dedup.fingerprint(q, r, 5, 128, bench) for q, r in short]


def test_token_hashes_do_not_depend_on_where_the_text_is_cut_for_hashing(monkeypatch):
    text = Path(json.__file__).read_text() + " a_very_long_identifier_" * 40
    whole = dedup.token_hashes(text)
    monkeypatch.setattr(dedup, "_PIECE", 64)  # many pieces, cut at token starts
    assert dedup.token_hashes(text).tolist() == whole.tolist()
    assert len(text) > 100 * 64
