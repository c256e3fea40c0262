"""Re-mining does only new work: per-commit results are cached by sha and settings."""

from __future__ import annotations

import pytest
from conftest import RepoBuilder, distinct_function, make_cfg, mine_repo

from harness.io import read_json
from harness.mine import schedule, stage
from harness.stages import run_stage


@pytest.fixture
def repo(tmp_path):
    b = RepoBuilder(tmp_path / "lib")
    for i in range(10):
        b.commit(f"Add the parser for format {i}", {f"lib/fmt{i}.py": distinct_function(f"parse_{i}", 22)}, day=1 + i)
    return b


def mine(tmp_path, repo, name, *overrides):
    return mine_repo(tmp_path, repo.path, *overrides, name=name)[0]


def test_a_rerun_reuses_every_commit_and_new_commits_are_the_only_work(tmp_path, repo):
    first = mine(tmp_path, repo, "a")
    assert first["cache"] == {"commits_reused": 0, "commits_mined": 10}
    again = mine(tmp_path, repo, "b")
    assert again["cache"] == {"commits_reused": 10, "commits_mined": 0}
    assert (tmp_path / "a" / "records.jsonl").read_text() == (tmp_path / "b" / "records.jsonl").read_text()
    for i in range(10, 12):
        repo.commit(f"Add the parser for format {i}", {f"lib/fmt{i}.py": distinct_function(f"parse_{i}", 22)}, day=1 + i)
    more = mine(tmp_path, repo, "c")
    assert more["cache"] == {"commits_reused": 10, "commits_mined": 2}
    assert more["kept"]["commit/train"] + more["kept"]["commit/test"] == 12


def test_only_settings_that_shape_a_commit_invalidate_it(tmp_path, repo):
    mine(tmp_path, repo, "a")
    assert mine(tmp_path, repo, "b", "data.mine.test_fraction=0.5")["cache"]["commits_mined"] == 0
    assert mine(tmp_path, repo, "c", "data.mine.min_changed_lines=10")["cache"]["commits_mined"] == 10


def test_a_crash_keeps_the_finished_batches(tmp_path, repo, monkeypatch):
    real, calls = schedule.mine_chunk, []

    def flaky(repo_path, shas, o, **kwargs):
        calls.append(len(shas))
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(repo_path, shas, o, **kwargs)

    monkeypatch.setattr(schedule, "mine_chunk", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        mine(tmp_path, repo, "a", "data.mine.chunk_size=4", "data.mine.workers=1")
    monkeypatch.setattr(schedule, "mine_chunk", real)
    assert calls == [4, 3, 3]  # 10 commits in even batches of at most 4, the newest first
    assert mine(tmp_path, repo, "b", "data.mine.chunk_size=4")["cache"] == {
        "commits_reused": 7, "commits_mined": 3}


def test_harness_mine_skips_an_unchanged_repository_and_reruns_on_a_new_commit(tmp_path, repo):
    cfg = make_cfg(tmp_path / "run", repo.path, [], tmp_path / "cache")
    first = run_stage(cfg, "mine")
    done = read_json(tmp_path / "run" / "mine" / "stage.json")
    assert run_stage(cfg, "mine") == first
    assert read_json(tmp_path / "run" / "mine" / "stage.json") == done  # skipped: not rewritten
    repo.commit("Add the parser for format 10", {"lib/fmt10.py": distinct_function("parse_10", 22)}, day=11)
    again = run_stage(cfg, "mine")
    assert again["head"] == repo.sha() and again["cache"] == {"commits_reused": 10, "commits_mined": 1}


def test_a_new_miner_mines_again_instead_of_restoring_the_old_miners_output(tmp_path, repo, monkeypatch, caplog):
    first = make_cfg(tmp_path / "first", repo.path, [], tmp_path / "cache")
    run_stage(first, "mine")
    second = make_cfg(tmp_path / "second", repo.path, [], tmp_path / "cache")
    monkeypatch.setattr(stage, "code_version", lambda: "a-fixed-miner")  # as after an upgrade
    caplog.set_level("INFO")
    run_stage(second, "mine")
    assert "restored from the stage cache" not in caplog.text and "mine: running" in caplog.text
