"""Repositories that are awkward to mine: each gets a clear message or is mined safely."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from conftest import RepoBuilder, distinct_function, git, mine_repo

from harness.errors import HarnessError


@pytest.fixture
def repo(tmp_path):
    b = RepoBuilder(tmp_path / "src")
    for i in range(6):
        b.commit(f"Add the handler for event {i}", {f"app/h{i}.py": distinct_function(f"handle_{i}", 22)}, day=1 + i)
    return b


def test_a_shallow_clone_is_refused_unless_allowed(tmp_path, repo):
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "3", f"file://{repo.path}", str(shallow)], check=True)
    with pytest.raises(HarnessError, match=r"shallow clone.*git fetch --unshallow.*allow_shallow"):
        mine_repo(tmp_path, shallow)
    stats, _, _ = mine_repo(tmp_path, shallow, "data.mine.allow_shallow=true", name="allowed")
    assert stats["commits_seen"] == 3
    # the cut-off commit would look like it added the whole tree: it is dropped
    assert stats["sources"]["commit"]["dropped"] == {"shallow_boundary": 1}


def test_the_cli_exits_2_with_the_message_and_writes_nothing(tmp_path, repo):
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{repo.path}", str(shallow)], check=True)
    res = subprocess.run([sys.executable, "-m", "harness.cli", "mine", f"data.repo={shallow}", "run_name=x"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 2 and "is a shallow clone" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert not list((tmp_path / "runs").rglob("records.jsonl"))


def test_a_detached_head_is_mined_at_the_commit_it_points_to(tmp_path, repo, caplog):
    repo.checkout("--detach", "HEAD~1")
    with caplog.at_level(logging.INFO):
        stats, _, _ = mine_repo(tmp_path, repo.path)
    assert stats["head"] == repo.sha() and stats["commits_seen"] == 5
    assert "HEAD is detached" in caplog.text


def test_submodule_pointers_are_skipped_with_a_warning(tmp_path, repo, caplog):
    sub = RepoBuilder(tmp_path / "vendored")
    sub.commit("Vendored library", {"lib.py": distinct_function("vendored", 22)}, day=1)
    git(repo.path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "vendored")
    repo.commit("Vendor the parsing library and use it in handler 9",
                {"app/h9.py": distinct_function("handle_9", 22)}, day=9)
    with caplog.at_level(logging.WARNING):
        stats, records, _ = mine_repo(tmp_path, repo.path)
    assert "has submodules" in caplog.text
    assert stats["files_dropped"]["submodule"] == 1
    [r] = [r for r in records if r.get("instruction", "").startswith("Vendor the parsing")]
    assert r["files"] == ["app/h9.py"]  # .gitmodules is too small to matter; the gitlink is gone


def test_a_50_mb_file_is_never_read(tmp_path, repo):
    table = lambda c: (c * 2 * 2**20 + "\n") * 25  # noqa: E731  (25 lines, 50 MB)
    repo.commit("Add the lookup table and the handler that uses it",
                {"data/table.txt": table("x"), "app/h7.py": distinct_function("handle_7", 22)}, day=7)
    repo.commit("Regenerate the lookup table for the new rates", {"data/table.txt": table("y")},
                append=False, day=8)
    stats, records, _ = mine_repo(tmp_path, repo.path)
    assert stats["files_dropped"] == {"file_too_large": 2}
    assert stats["sources"]["commit"]["dropped"] == {"no_text_changes": 1}
    [r] = [r for r in records if r.get("instruction", "").startswith("Add the lookup table")]
    assert r["files"] == ["app/h7.py"] and len(r["response"]) < 5000
    assert (tmp_path / "out" / "records.jsonl").stat().st_size < 2**20


def test_non_utf8_messages_and_files_do_not_break_mining(tmp_path, repo):
    git(repo.path, "config", "i18n.commitEncoding", "latin-1")
    (repo.path / "app" / "notes.py").write_bytes("# caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 30)
    (repo.path / "app" / "h8.py").write_text(distinct_function("handle_8", 22))
    git(repo.path, "add", "-A")
    msg = "Add the caf\xe9 handler and its notes".encode("latin-1")
    subprocess.run(["git", "-C", str(repo.path), "commit", "-q", "-F", "-"], input=msg, check=True)
    stats, records, _ = mine_repo(tmp_path, repo.path)
    [r] = [r for r in records if r.get("instruction", "").startswith("Add the caf")]
    assert r["instruction"].startswith("Add the café handler")  # re-encoded by git, not mangled
    assert r["files"] == ["app/h8.py"] and stats["files_dropped"] == {"non_utf8": 1}
