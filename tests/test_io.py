"""File helpers as the stages use them: files get the user's umask (not tempfile's 0600), and a
full disk is reported with the path and the space, on a real full filesystem (a small tmpfs
mounted in a private user + mount namespace, so no root is needed and nothing leaks out)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.io import atomic_write_json, atomic_write_text, make_temp_dir, umask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def user_umask():
    """Set the process umask for one test, restoring it after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                            (0o027, 0o640, 0o750),
                                                            (0o002, 0o664, 0o775)])
def test_written_files_and_temp_dirs_follow_the_umask(tmp_path, user_umask, mask, file_mode, dir_mode):
    user_umask(mask)
    assert umask() == mask
    assert mode(atomic_write_json(tmp_path / "verdict.json", {"decision": "deploy"})) == file_mode
    assert mode(atomic_write_text(tmp_path / "report.md", "# report\n")) == file_mode
    assert mode(make_temp_dir(tmp_path, ".cache.")) == dir_mode


def test_a_rewrite_keeps_no_temp_file_and_replaces_the_content(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two" and os.listdir(tmp_path) == ["a.txt"]


def run_on_small_tmpfs(mount: Path, size_kib: int, code: str, cwd: Path | None = None,
                       argv: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` (Python) — or `argv` — with a `size_kib` tmpfs mounted at `mount`, inside a
    new user + mount namespace (the mount is private to that process and gone after it)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    mount.mkdir(parents=True, exist_ok=True)
    inner = argv or [sys.executable, "-c", code]
    script = (f'mount -t tmpfs -o size={size_kib}k tmpfs "$0" || exit 97\n'
              f'cd "$1" && shift 2 && exec "$@"')
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                          str(mount), str(cwd or mount), "_", *inner],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if res.returncode == 97:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {res.stdout[-300:]}")
    return res


def test_a_full_disk_names_the_path_and_the_space(tmp_path):
    code = textwrap.dedent("""
        import os, sys
        from harness.errors import HarnessError
        from harness.io import atomic_write_text
        try:
            atomic_write_text("out/big.txt", "x" * 400_000)
        except HarnessError as e:
            print("ERROR:", e)
            print("LEFT:", sorted(os.listdir("out")))
            sys.exit(2)
    """)
    res = run_on_small_tmpfs(tmp_path / "mnt", 256, code)
    assert res.returncode == 2, res.stdout
    assert "no space left on the device holding out/big.txt" in res.stdout
    assert "needed 390.6 KiB" in res.stdout and "KiB is free there" in res.stdout
    assert "LEFT: []" in res.stdout  # no half-written temp file stays behind


def test_the_model_cache_follows_the_umask(tiny_model):
    """The tiny model is built in a temp dir and renamed into the cache: neither the directory
    (mkdtemp's 0700) nor the weights (safetensors' 0600) stay private."""
    root = Path(tiny_model)
    assert mode(root) == 0o777 & ~umask()
    assert {mode(p) for p in root.iterdir() if p.is_file()} == {0o666 & ~umask()}
