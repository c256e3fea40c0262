"""The streaming pass and the batched diffs agree with git and with PyDriller's own objects."""

from __future__ import annotations

import pytest
from conftest import RepoBuilder, distinct_function, git

from harness.mine.diffs import line_counts, modified_files, open_repo
from harness.mine.scan import scan


@pytest.fixture(scope="module")
def odd_repo(tmp_path_factory):
    """Root commit, odd file names, a rename with edits, a delete, a binary file, a merge."""
    b = RepoBuilder(tmp_path_factory.mktemp("scan") / "odd")
    b.commit("Root: first files", {"a b.py": distinct_function("spaced", 8), "ünï/cödé.py": "x = 1\n",
                                   'quote"d.txt': "q\n", "gone.py": "bye = 1\n"}, day=1)
    b.commit("Rename with edits, delete, add binary\n\nBody line.\n\x1fodd separator",
             {"ünï/renamed.py": "y = 2\n", "blob.bin": bytes(range(256))},
             rename={"ünï/cödé.py": "ünï/renamed.py"}, delete=("gone.py",), day=2)
    b.checkout("-b", "side")
    b.commit("Side change", {"side.py": distinct_function("side", 6)}, day=3)
    b.checkout("main")
    b.commit("Main change", {"a b.py": "\n# more\n"}, day=4)
    b.merge("side", "Merge pull request #3 from x/side\n\nSide work", day=5)
    return b


def test_scan_reads_metadata_and_changed_files_like_git(odd_repo):
    shas = git(odd_repo.path, "rev-list", "--reverse", "--topo-order", "HEAD").split()
    metas = list(scan(odd_repo.path, shas))
    assert [m.sha for m in metas] == shas
    root, renamed = metas[0], metas[1]
    assert root.parents == [] and {f.path for f in root.files} == {"a b.py", "ünï/cödé.py", 'quote"d.txt', "gone.py"}
    assert renamed.message.startswith("Rename with edits") and "\x1fodd separator" in renamed.message
    by_path = {f.path: f for f in renamed.files}
    assert by_path["ünï/renamed.py"].status == "R" and by_path["ünï/renamed.py"].old_path == "ünï/cödé.py"
    assert by_path["gone.py"].status == "D" and by_path["blob.bin"].status == "A"
    assert metas[-1].subject == "Merge pull request #3 from x/side" and len(metas[-1].parents) == 2
    assert [f.path for f in metas[-1].files] == ["side.py"]  # against the first parent


def test_batched_diffs_are_the_modified_files_pydriller_computes(odd_repo):
    from pydriller import Repository

    theirs = {c.hash: c for c in Repository(str(odd_repo.path)).traverse_commits()}
    ours = modified_files(open_repo(odd_repo.path), [(sha, None) for sha in theirs])
    for commit, mfs in zip(theirs.values(), ours, strict=True):
        if commit.merge:
            continue  # PyDriller leaves merges empty; we diff them against the first parent
        key = lambda m: (m.old_path or "", m.new_path or "")  # noqa: E731
        assert sorted(map(key, mfs)) == sorted(map(key, commit.modified_files)), commit.msg
        for mine, ref in zip(sorted(mfs, key=key), sorted(commit.modified_files, key=key), strict=True):
            assert (mine.diff, mine.change_type, mine.added_lines, mine.deleted_lines) == \
                   (ref.diff, ref.change_type, ref.added_lines, ref.deleted_lines)
            assert mine.source_code_before == ref.source_code_before
    merge = odd_repo.sha()
    [side] = modified_files(open_repo(odd_repo.path), [(merge, odd_repo.sha("HEAD^1"))])[0]
    assert side.new_path == "side.py" and side.added_lines == 11


def test_line_counts_of_the_batched_diffs_are_gits_numstat(odd_repo):
    shas = git(odd_repo.path, "rev-list", "--reverse", "--topo-order", "HEAD").split()
    pairs = [(s, odd_repo.sha(f"{s}^1") if s == odd_repo.sha() else None) for s in shas]  # the merge
    for (sha, _), mfs in zip(pairs, modified_files(open_repo(odd_repo.path), pairs), strict=True):
        numstat = git(odd_repo.path, "show", "-z", "--numstat", "-M", "--format=", "--diff-merges=first-parent", sha)
        expected = sorted((-1, -1) if t[0] == "-" else (int(t[0]), int(t[1]))
                          for t in (e.split("\t") for e in numstat.split("\0") if "\t" in e))
        assert sorted(line_counts(mf._c_diff.diff) or (-1, -1) for mf in mfs) == expected, sha
