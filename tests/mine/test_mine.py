"""Mining a real git repository built in the test."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from conftest import git, make_cfg

from harness.errors import HarnessError
from harness.io import read_json, read_jsonl
from harness.mine.stage import run


def mine(tmp_path, repo, *overrides):
    out = tmp_path / "mine-out"
    out.mkdir()
    stats = run(make_cfg(tmp_path / "run", repo, list(overrides)), out)
    return stats, list(read_jsonl(out / "records.jsonl")), out


def test_commits_become_message_to_diff_records_with_provenance(tmp_path, history_repo):
    stats, records, out = mine(tmp_path, history_repo)
    commits = [r for r in records if r["kind"] == "commit"]
    # ten feature commits and the topic commit survive; the 2-line skeleton is too small
    assert stats["dropped"] == {"merge": 1, "bot": 1, "no_text_changes": 1, "short_message": 1,
                                "too_large": 1, "too_small": 1}
    assert len(commits) == 11
    r = next(r for r in commits if r["instruction"].startswith("Add feature_3"))
    assert r["response"].startswith("--- a/pkg/mod0.py\n+++ b/pkg/mod0.py\n@@")
    assert "+def feature_3(value: int) -> int:" in r["response"]
    assert r["added"] == 28 and r["deleted"] == 0 and r["files"] == ["pkg/mod0.py"]
    assert len(r["author_id"]) == 16 and "example.com" not in str(r)
    assert read_json(out / "mine_stats.json") == stats


def test_newest_commits_are_held_out_and_nothing_after_the_cutoff_is_trained_on(tmp_path, history_repo):
    stats, records, _ = mine(tmp_path, history_repo, "data.mine.test_fraction=0.2")
    commits = sorted((r for r in records if r["kind"] == "commit"), key=lambda r: r["committed_at"])
    splits = [r["split"] for r in commits]
    assert splits == ["train"] * 9 + ["test"] * 2
    assert all(r["committed_at"] < stats["cutoff"] for r in records if r["split"] == "train")
    fim = Counter(r["split"] for r in records if r["kind"] == "fim_source")
    assert fim["train"] >= 3 and fim["test"] == 2
    test_src = next(r for r in records if r["kind"] == "fim_source" and r["split"] == "test")
    lines = test_src["content"].splitlines()
    assert all("total +=" in lines[n - 1] or lines[n - 1].startswith(("def", "    ")) or not lines[n - 1]
               for n in test_src["added_lines"])
    # the train FIM tree is the last one before the cutoff: test-only functions are absent
    train_text = "".join(r["content"] for r in records if r["kind"] == "fim_source" and r["split"] == "train")
    assert "feature_9" not in train_text and "feature_7" in train_text


def test_the_users_repository_is_left_untouched(tmp_path, history_repo):
    before = (history_repo / ".git" / "config").read_text()
    mine(tmp_path, history_repo)
    assert (history_repo / ".git" / "config").read_text() == before


def test_not_a_repository_is_refused_with_the_fix(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(HarnessError, match="not a git repository"):
        mine(tmp_path, tmp_path / "plain")


def test_a_repository_without_commits_is_refused(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.raises(HarnessError, match="no commits"):
        mine(tmp_path, repo)


def test_everything_filtered_out_says_which_filters_dropped_what(tmp_path, history_repo):
    with pytest.raises(HarnessError, match="too_small"):
        mine(tmp_path, history_repo, "data.mine.min_changed_lines=100000", "data.mine.fim_extensions=[.rs]")
    assert git(history_repo, "status", "--porcelain") == ""
