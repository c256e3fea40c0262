"""Every git-only source of a real history: PR merges and squashes, review corrections
("Apply suggestions from code review", fixup!), reverts as negatives, renames, bot trailers,
binary and non-UTF-8 files."""

from __future__ import annotations

import pytest
from conftest import RepoBuilder, distinct_function, git, mine_repo

from harness.io import read_jsonl

ANN, BOB = "Ann A <ann@example.com>", "Bob B <bob@example.com>"


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sources")
    b = RepoBuilder(tmp / "shop")
    b.commit("Create the shop package with its core helpers", {"shop/core.py": distinct_function("core_init", 24)}, day=1)
    for i in range(4):
        b.commit(f"Add pricing rule {i} for seasonal discounts", {f"shop/rule{i}.py": distinct_function(f"rule_{i}", 22)},
                 day=2 + i, author=(ANN, BOB)[i % 2])
    bad = b.commit("Add the exporter that writes weekly ledgers", {"shop/export.py": distinct_function("export_week", 30)}, day=7)
    b.commit(f'Revert "Add the exporter that writes weekly ledgers"\n\nThis reverts commit {bad}.',
             delete=("shop/export.py",), day=8)
    b.checkout("-b", "feature/cache")
    b.commit("Add a cache for account lookups", {"shop/cache.py": distinct_function("cache_lookup", 26)}, day=9)
    b.commit("Apply suggestions from code review\n\nCo-authored-by: Rev R <rev@example.com>",
             {"shop/cache.py": "    # drop stale entries before the lookup\n    stale = []\n"}, day=10)
    b.commit("Add cache statistics for the dashboard", {"shop/stats.py": distinct_function("cache_stats", 24)}, day=11)
    b.checkout("main")
    merge = b.merge("feature/cache", "Merge pull request #7 from team/feature-cache\n\nCache account lookups",
                    day=12)
    squash = b.commit("Speed up the quota checks (#12)\n\nThe quota check ran once per record; now once "
                      "per batch.\n\nSigned-off-by: Ann A <ann@example.com>",
                      {"shop/quota.py": distinct_function("check_quota", 28)}, day=13, author=ANN)
    b.commit("fixup! Speed up the quota checks (#12)", {"shop/quota.py": "    # batch size from settings\n"}, day=14)
    b.commit("Rename rule 2 to holidays and add the holiday calendar",
             {"shop/holidays.py": distinct_function("holiday_calendar", 21)},
             rename={"shop/rule2.py": "shop/holidays.py"}, day=15)
    b.commit("Bump the schedule parser to the new API\n\nSigned-off-by: dependabot[bot] <support@github.com>",
             {"shop/schedule.py": distinct_function("parse_schedule", 25)}, day=16)
    b.commit("Store the logo and the latin-1 notes",
             {"assets/logo.png": b"\x89PNG\r\n\x1a\n\x00" + bytes(range(256)) * 8,
              "notes/latin1.py": "# caf\xe9 cr\xe8me\n".encode("latin-1") * 30}, day=17)
    # a fetched pull request that was never merged: only its review iterations are mined
    b.checkout("-b", "pr-9")
    b.commit("Add loyalty points to the checkout", {"shop/points.py": distinct_function("points", 24)}, day=17)
    b.commit("Apply suggestion from @rev\n\nCo-authored-by: Rev R <rev@example.com>",
             {"shop/points.py": "    # points expire after a year\n    expiry = 365\n"}, day=18)
    git(b.path, "update-ref", "refs/pull/9/head", "HEAD")
    b.checkout("main")
    for i in range(4, 8):
        b.commit(f"Add pricing rule {i} for regional taxes", {f"shop/rule{i}.py": distinct_function(f"rule_{i}", 22)},
                 day=14 + i, author=(ANN, BOB)[i % 2])
    stats, records, out = mine_repo(tmp, b.path, "data.mine.test_fraction=0.2")
    return {"stats": stats, "records": records,
            "negatives": list(read_jsonl(out / "negatives.jsonl")), "bad": bad, "merge": merge,
            "squash": squash}


def by_source(mined, source):
    return [r for r in mined["records"] if r.get("source") == source]


def test_a_merged_pull_request_becomes_a_pr_record(mined):
    parts = by_source(mined, "git:merge")
    assert {(p["kind"], p["pr"]) for p in parts} == {("pr", 7)}
    assert all(p["shas"] == [mined["merge"]] for p in parts)
    # the PR title, not "Merge pull request"
    assert all(p["instruction"].startswith("Cache account lookups") for p in parts)
    # the PR's whole change against main: both of its files, one record each when the two do
    # not fit the budget together, each request naming its part
    assert sorted(f for p in parts for f in p["files"]) == ["shop/cache.py", "shop/stats.py"]
    assert any("def cache_stats(value):" in p["response"] for p in parts)
    assert len(parts) == 1 or all(f"belongs in `{p['files'][0]}`" in p["instruction"] for p in parts)


def test_a_squash_merge_keeps_its_description_and_loses_the_number(mined):
    [pr] = by_source(mined, "git:squash")
    assert pr["kind"] == "pr" and pr["pr"] == 12 and pr["shas"] == [mined["squash"]]
    assert pr["instruction"] == "Speed up the quota checks\n\nThe quota check ran once per record; now once per batch."
    assert "Signed-off-by" not in pr["instruction"]


def test_review_corrections_pair_the_code_before_with_the_corrected_code(mined):
    [sugg] = [r for r in by_source(mined, "git:suggestion") if r["pr"] is None]
    assert sugg["kind"] == "review_fix" and sugg["files"] == ["shop/cache.py"]
    assert sugg["instruction"].startswith("Apply the reviewer's suggestion from code review.")
    assert "rev@example.com" not in str(sugg) and "Co-authored-by" not in sugg["instruction"]
    before = sugg["instruction"].split("The code before the change:\n")[1]
    assert "stale = []" not in before and "    stale = []\n" in sugg["response"]
    assert sugg["response"].startswith("--- shop/cache.py (lines ")
    [fix] = by_source(mined, "git:fixup")
    assert fix["instruction"].startswith('Fix up the earlier change "Speed up the quota checks (#12)".')
    assert "# batch size from settings" in fix["response"] and "# batch size" not in fix["instruction"]


def test_review_iterations_of_a_fetched_pull_request_are_mined(mined):
    [fix] = [r for r in by_source(mined, "git:suggestion") if r["pr"] == 9]
    assert "    expiry = 365\n" in fix["response"] and "shop/points.py" in fix["files"]
    assert not any("Add loyalty points" in r.get("instruction", "") for r in mined["records"])
    # the unmerged PR's commit, and the two commits of merged PR #7's branch: the PR is one
    # record, not its merge plus each branch commit again (its review fix stays: a reviewer's words)
    assert mined["stats"]["sources"]["commit"]["dropped"]["pr_branch_commit"] == 3
    assert not any(r["instruction"].startswith(("Add a cache for account", "Add cache statistics"))
                   for r in mined["records"] if r["kind"] == "commit")


def test_a_reverted_commit_is_a_negative_example_never_trained_on(mined):
    [neg] = mined["negatives"]
    assert neg["shas"] == [mined["bad"]] and neg["negative"] is True and neg["kind"] == "commit"
    assert neg["reverted_by"] and "export_week" in neg["response"]
    assert not any(mined["bad"] in r.get("shas", []) for r in mined["records"])
    dropped = mined["stats"]["sources"]
    assert dropped["commit"]["dropped"]["reverted"] == 1
    assert dropped["revert"] == {"in": 1, "dropped": {"revert_commit": 1}, "out": 0}
    assert mined["stats"]["negatives"] == 1


def test_a_rename_diffs_against_the_old_path(mined):
    [r] = [r for r in mined["records"] if r.get("instruction", "").startswith("Rename rule 2")]
    assert r["response"].startswith("--- shop/holidays.py (lines ") and "(renamed from shop/rule2.py)\n" in r["response"]
    assert "The code before the change:\n--- shop/rule2.py (lines " in r["instruction"]
    assert r["added"] == 26 and r["deleted"] == 0  # the content change only, not the whole file


def test_bots_binary_and_non_utf8_files_never_become_text(mined):
    stats = mined["stats"]
    assert stats["sources"]["commit"]["dropped"]["bot"] == 1  # by its Signed-off-by trailer
    assert stats["files_dropped"] == {"binary": 1, "non_utf8": 1}
    assert stats["sources"]["commit"]["dropped"]["no_text_changes"] == 1
    changes = [r for r in mined["records"] if r["kind"] in ("commit", "pr", "review_fix")]
    assert not any("parse_schedule" in r["response"] for r in changes)
    assert "caf" not in str(mined["records"])


def test_stats_count_in_and_out_of_every_source(mined):
    sources = mined["stats"]["sources"]
    assert set(sources) == {"commit", "pr", "review_fix", "revert", "docstring", "fim_source"}
    for kind, s in sources.items():
        out = sum(1 for r in mined["records"] if r["kind"] == kind)
        assert s["out"] == out and s["in"] == out + sum(s["dropped"].values()), kind


def test_held_out_fim_holes_sit_on_the_lines_a_renaming_commit_added(tmp_path):
    b = RepoBuilder(tmp_path / "tax")
    for i in range(6):
        b.commit(f"Add pricing rule {i} for seasonal discounts", {f"shop/rule{i}.py": distinct_function(f"rule_{i}", 22)},
                 day=1 + i)
    # the newest commit renames and extends a module, next to a file too large to ever read
    b.commit("Move rule 1 into the tax module and add the regional surcharge",
             {"shop/tax.py": distinct_function("regional_surcharge", 20), "data/dump.py": "x = 1\n" * 200_000},
             rename={"shop/rule1.py": "shop/tax.py"}, day=10)
    _, records, _ = mine_repo(tmp_path, b.path, "data.mine.test_fraction=0.2")
    [held_out] = [r for r in records if r["kind"] == "fim_source" and r["split"] == "test"]
    lines = held_out["content"].split("\n")
    added = {lines[n - 1] for n in held_out["added_lines"]}
    assert held_out["path"] == "shop/tax.py" and "def regional_surcharge(value):" in added
    assert not any("rule_1" in line for line in added)  # the moved code was not added
