"""Open a user's repository safely: validate it and mine a throwaway shared clone.

PyDriller writes to the config of the repository it opens, so we never open the user's
repository itself: `git clone --shared` makes a clone that borrows its objects (no copy, a
fraction of a second even for large histories) and that we can delete afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def resolve_rev(repo: str | Path, rev: str = "HEAD") -> str:
    """Validate `repo` and return the commit sha that `rev` names."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise HarnessError(f"data.repo={repo!s}: no such directory. Fix: point data.repo at a local git clone.")
    if _git(path, "rev-parse", "--git-dir").returncode != 0:
        raise HarnessError(
            f"data.repo={repo!s} is not a git repository. Fix: point data.repo at a local clone "
            f"(git clone <url>), not at a plain directory."
        )
    res = _git(path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if res.returncode != 0:
        if _git(path, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
            raise HarnessError(f"data.repo={repo!s} has no commits yet: there is no history to mine.")
        raise HarnessError(f"data.rev={rev!r} is not a commit in {repo!s}. Fix: use a branch, tag or sha.")
    return res.stdout.strip()


def repo_name(repo: str | Path) -> str:
    url = _git(Path(repo), "config", "--get", "remote.origin.url").stdout.strip()
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else Path(repo).resolve().name
    return name.removesuffix(".git")


@contextlib.contextmanager
def shared_clone(repo: str | Path) -> Iterator[Path]:
    """A temporary bare clone sharing `repo`'s objects; removed on exit."""
    with tempfile.TemporaryDirectory(prefix="harness-mine-") as tmp:
        dest = Path(tmp) / "repo.git"
        res = subprocess.run(
            ["git", "clone", "--quiet", "--bare", "--shared", str(Path(repo).resolve()), str(dest)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise HarnessError(f"could not clone {repo!s} for mining: {res.stderr.strip()}")
        yield dest
