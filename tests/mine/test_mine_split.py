"""The held-out split is by time: the newest share of the history's time span, not of its
commits, with a warning when a side is tiny."""

from __future__ import annotations

from conftest import distinct_function, mine_repo


def test_a_history_busy_in_its_first_weeks_holds_out_by_time_not_by_count(tmp_path, repo_builder):
    b = repo_builder()
    days = [*range(1, 17), 100, 200, 300, 340]  # 16 commits in a fortnight, then one a quarter
    for i, day in enumerate(days):
        b.commit(f"Add the ledger step {i} for the monthly close", {f"pkg/step{i}.py": distinct_function(f"step_{i}", 22)},
                 day=day)
    stats, records, _ = mine_repo(tmp_path, b.path, "data.mine.test_fraction=0.25")
    commits = sorted((r for r in records if r["kind"] == "commit"), key=lambda r: r["committed_at"])
    # the newest quarter of 339 days starts after day 255: two commits, not the newest five
    assert [r["split"] for r in commits] == ["train"] * 18 + ["test"] * 2
    split = stats["split"]
    assert split["cutoff"] == commits[18]["committed_at"] == stats["cutoff"]
    assert split["train"]["records"] == 18 and split["test"] == {
        "records": 2, "from": commits[18]["committed_at"], "to": commits[19]["committed_at"]}
    assert "the test split holds 2 of 20 change records" in split["warning"]  # tiny: said so


def test_an_explicit_date_is_the_cutoff_and_a_balanced_split_has_no_warning(tmp_path, repo_builder):
    b = repo_builder()
    for i in range(24):
        b.commit(f"Add the ledger step {i} for the monthly close", {f"pkg/step{i}.py": distinct_function(f"step_{i}", 22)},
                 day=1 + i)
    stats, _, _ = mine_repo(tmp_path, b.path, "data.mine.test_cutoff=2024-01-14")
    assert stats["split"]["train"]["records"] == 12 and stats["split"]["test"]["records"] == 12
    assert stats["split"]["by"] == "date" and "warning" not in stats["split"]
