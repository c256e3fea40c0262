"""Mining a real git repository built in the test: records, provenance, split, stats."""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import pytest
from conftest import distinct_function, git, mine_repo

from harness.errors import HarnessError
from harness.io import read_json

ANN, BOB, CY = "Ann A <ann@example.com>", "Bob B <bob@example.com>", "Cy C <cy@example.com>"


@pytest.fixture
def team_repo(repo_builder):
    """Twelve distinct features by three authors, plus a skeleton too small to keep."""
    b = repo_builder()
    b.commit("Create the package skeleton", {"pkg/__init__.py": '"""Ledger tools."""\n'}, day=1)
    for i in range(12):
        b.commit(f"Add feature_{i} to derive ledger values\n\nTicket {i}.",
                 {f"pkg/mod{i % 3}.py": distinct_function(f"feature_{i}", 22 + i)}, day=2 + i,
                 author=(ANN, BOB, CY)[i % 3])
    return b


def test_commits_become_message_to_diff_records_with_provenance(tmp_path, team_repo):
    stats, records, out = mine_repo(tmp_path, team_repo.path)
    commits = [r for r in records if r["kind"] == "commit"]
    assert len(commits) == 12 and stats["sources"]["commit"] == {
        "in": 13, "dropped": {"too_small": 1}, "out": 12}
    r = next(r for r in commits if r["instruction"].startswith("Add feature_3"))
    # the default target: the new code of the region the prompt shows
    assert r["response"].startswith("--- pkg/mod0.py (lines ") and r["format"] == "region"
    assert "\ndef feature_3(value):" in r["response"]
    assert r["added"] == 30 and r["deleted"] == 0 and r["files"] == ["pkg/mod0.py"]
    assert r["shas"] == [git(team_repo.path, "rev-parse", "HEAD~8")] and r["repo"] == "project"
    assert r["source"] == "git:commit" and r["pr"] is None and r["redactions"] == []
    assert len(r["author_id"]) == 16 and "example.com" not in str(records)
    assert read_json(out / "mine_stats.json") == stats
    assert (out / "negatives.jsonl").read_text() == ""


def test_the_code_before_a_change_is_context_when_it_fits(tmp_path, team_repo):
    _, records, _ = mine_repo(tmp_path, team_repo.path)
    later = next(r for r in records if r["kind"] == "commit" and r["instruction"].startswith("Add feature_3"))
    # feature_3 is appended to mod0.py, which held feature_0: the instruction shows the 20
    # lines above the hunk, exactly as they were before the change
    header, code = later["instruction"].split("The code before the change:\n--- pkg/mod0.py ")[1].split("\n", 1)
    lo, hi = map(int, header.strip("(lines )").split("-"))
    before = subprocess.run(["git", "-C", str(team_repo.path), "show", f"{later['shas'][0]}^:pkg/mod0.py"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    assert code.rstrip("\n") == "\n".join(before[lo - 1:hi]).rstrip("\n") and hi - lo >= 20
    assert "return" in code  # the end of feature_0
    first = next(r for r in records if r["kind"] == "commit" and r["instruction"].startswith("Add feature_0"))
    assert "The code before" not in first["instruction"]  # a new file has no code before
    # a model context too small for the change with its context: the least context (the
    # hunk's own 3 lines above the appended function), and the pair counted as over the budget
    stats, small, _ = mine_repo(tmp_path, team_repo.path, "data.mine.fit_tokens=300", name="small")
    appended = [r for r in small if r["kind"] == "commit" and "The code before" in r["instruction"]]
    spans = [tuple(map(int, h.split("-"))) for r in appended
             for h in re.findall(r"\(lines (\d+-\d+)\)", r["instruction"])]
    assert appended and all(hi - lo < 3 for lo, hi in spans)
    # (the three that create their file have no code before: they are over the budget too)
    assert stats["sources"]["commit"]["cut"]["over_budget"] == len(appended) + 3 == 12


def test_newest_commits_are_held_out_and_nothing_after_the_cutoff_is_trained_on(tmp_path, team_repo):
    stats, records, _ = mine_repo(tmp_path, team_repo.path, "data.mine.test_fraction=0.25")
    commits = sorted((r for r in records if r["kind"] == "commit"), key=lambda r: r["committed_at"])
    assert [r["split"] for r in commits] == ["train"] * 9 + ["test"] * 3
    assert stats["cutoff"] == commits[9]["committed_at"]
    assert all(r["committed_at"] < stats["cutoff"] for r in records if r["split"] == "train")
    assert all(r["committed_at"] >= stats["cutoff"] for r in records if r["split"] == "test")
    fim = [r for r in records if r["kind"] == "fim_source"]
    assert Counter(r["split"] for r in fim) == {"train": 3, "test": 3}
    assert stats["sources"]["fim_source"]["dropped"] == {"too_short": 1}  # the one-line __init__
    # the train FIM tree is the last one before the cutoff: test-only functions are absent
    train_text = "".join(r["content"] for r in fim if r["split"] == "train")
    assert "def feature_9(" not in train_text and "def feature_8(" in train_text
    # held-out FIM holes are cut at the lines the test commit added
    test_src = next(r for r in fim if r["split"] == "test" and "feature_11" in r["content"])
    lines = test_src["content"].split("\n")
    assert "def feature_11(value):" in {lines[n - 1] for n in test_src["added_lines"]}
    assert not any("feature_10" in lines[n - 1] for n in test_src["added_lines"])


def test_a_cutoff_date_splits_instead_of_a_fraction(tmp_path, team_repo):
    stats, records, _ = mine_repo(tmp_path, team_repo.path, "data.mine.test_cutoff=2024-01-10")
    assert stats["cutoff"] == "2024-01-10T00:00:00+00:00"
    commits = [r for r in records if r["kind"] == "commit"]
    assert Counter(r["split"] for r in commits) == {"train": 7, "test": 5}  # features 7-11: Jan 10-14
    with pytest.raises(HarnessError, match="test_cutoff='soon' is not an ISO date"):
        mine_repo(tmp_path, team_repo.path, "data.mine.test_cutoff=soon", name="bad")


def test_docstring_pairs_come_from_the_ast(tmp_path, team_repo):
    _, records, _ = mine_repo(tmp_path, team_repo.path)
    docs = [r for r in records if r["kind"] == "docstring"]
    assert docs, "functions with docstrings become docstring → function pairs"
    for r in docs:
        name = r["instruction"].split("`")[1]
        signature, docstring = r["instruction"].split("\n")[1:3]
        assert signature == f"def {name}(value):" and docstring.startswith('    """Return the')
        # the reply is the whole function, starting where the request left off
        assert r["response"].startswith(f"{signature}\n{docstring}\n") and r["source"] == "ast"
    # no reply starts with whitespace: tokenizers would merge it into the turn's first token
    assert not any(r["response"][:1].isspace() for r in records if r["kind"] != "fim_source")


def test_one_authors_share_of_train_is_capped(tmp_path, repo_builder):
    b = repo_builder()
    for i in range(9):
        b.commit(f"Add helper_{i} to derive quota values", {f"pkg/h{i}.py": distinct_function(f"helper_{i}", 24)},
                 day=1 + i, author=ANN if i < 7 else BOB)
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.test_fraction=0.1",
                             "data.mine.max_author_share=0.5")
    train = [r for r in records if r["kind"] == "commit" and r["split"] == "train"]
    # 8 train commits: Ann's 7 are capped at half of them (4), Bob's one stays
    assert Counter(r["author_id"] for r in train).most_common(1)[0][1] == 4 and len(train) == 5
    assert stats["sources"]["commit"]["dropped"] == {"author_cap": 3}


def test_workers_and_batch_sizes_do_not_change_what_is_mined(tmp_path, repo_builder):
    # batches of two, newest first: the FIM tree is read ahead at the cutoff the twelve newest
    # commits suggest, which the four oldest ("wip", dropped) move; the files it got wrong are
    # read once the real cutoff is known
    b = repo_builder()
    for i in range(16):
        b.commit("wip" if i < 4 else f"Rewrite the parser for format {i % 5}, revision {i}",
                 {f"lib/fmt{i % 5}.py": distinct_function(f"parse_{i}", 22 + i)}, day=1 + i)
    runs = []
    for name, overrides in (("serial", ["data.mine.workers=1", "data.mine.chunk_size=3"]),
                            ("pooled", ["data.mine.workers=2", "data.mine.chunk_size=2"])):
        (tmp_path / name).mkdir()
        runs.append(mine_repo(tmp_path / name, b.path, "data.mine.test_fraction=0.5", *overrides))
    (serial, serial_records, _), (pooled, pooled_records, _) = runs
    assert pooled_records == serial_records and pooled == serial
    assert serial["kept"]["fim_source/train"] == 5 and serial["kept"]["commit/test"] == 6


def test_the_users_repository_is_left_untouched(tmp_path, team_repo):
    config = (team_repo.path / ".git" / "config").read_text()
    refs = git(team_repo.path, "show-ref")
    mine_repo(tmp_path, team_repo.path)
    assert (team_repo.path / ".git" / "config").read_text() == config
    assert git(team_repo.path, "show-ref") == refs and git(team_repo.path, "status", "--porcelain") == ""


def test_the_shared_fixture_history_drops_what_it_should(tmp_path, history_repo):
    stats, _, _ = mine_repo(tmp_path, history_repo, "data.mine.dedup.threshold=1.0")
    assert stats["sources"]["commit"]["dropped"] == {
        "merge": 1, "bot": 1, "no_text_changes": 1, "short_message": 1, "too_large": 1, "too_small": 1}
    assert stats["files_dropped"] == {"skipped_path": 1}  # the lockfile


def test_not_a_repository_is_refused_with_the_fix(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(HarnessError, match="not a git repository"):
        mine_repo(tmp_path, tmp_path / "plain")


def test_a_repository_without_commits_is_refused(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.raises(HarnessError, match="no commits"):
        mine_repo(tmp_path, repo)


def test_everything_filtered_out_says_which_filters_dropped_what(tmp_path, team_repo):
    with pytest.raises(HarnessError, match="too_small"):
        mine_repo(tmp_path, team_repo.path, "data.mine.min_changed_lines=100000",
             "data.mine.fim_extensions=[.rs]")
    assert not (tmp_path / "out" / "records.jsonl").exists()
