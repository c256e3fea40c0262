"""Validate a user's repository before any mining work starts.

Mining only reads: git plumbing commands (`rev-list`, `log`, `diff-tree`, `cat-file`) and
GitPython object reads. PyDriller's `Git` class is never opened on the user's repository,
because it writes to the repository's config; its `ModifiedFile` model is used on diffs we
stream ourselves (see diffs.py).

Every way a repository can be unfit for mining is found here, before any work starts, and
reported with its fix: not a repository, no commits, a shallow clone (its history is cut off),
an unknown revision. A detached HEAD and submodules are fine but logged, so the user knows
what is mined.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

log = logging.getLogger(__name__)
_quiet = logging.getLogger(f"{__name__}.quiet")  # for checks repeated where nothing is news
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())


def git(repo: str | Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                         errors="replace")
    if check and res.returncode != 0:
        raise HarnessError(f"`git {' '.join(args[:3])}` failed in {repo}: {res.stderr.strip()}")
    return res


def resolve_rev(repo: str | Path, rev: str = "HEAD") -> str:
    """Validate `repo` and return the commit sha that `rev` names."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise HarnessError(f"data.repo={repo!s}: no such directory. Fix: point data.repo at a local git clone.")
    if git(path, "rev-parse", "--git-dir").returncode != 0:
        raise HarnessError(
            f"data.repo={repo!s} is not a git repository. Fix: point data.repo at a local clone "
            f"(git clone <url>), not at a plain directory."
        )
    res = git(path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if res.returncode != 0:
        if git(path, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
            raise HarnessError(f"data.repo={repo!s} has no commits yet: there is no history to mine.")
        raise HarnessError(f"data.rev={rev!r} is not a commit in {repo!s}. Fix: use a branch, tag or sha.")
    return res.stdout.strip()


def repo_name(repo: str | Path) -> str:
    url = git(Path(repo), "config", "--get", "remote.origin.url").stdout.strip()
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else Path(repo).resolve().name
    return name.removesuffix(".git")


def github_slug(repo: str | Path) -> str | None:
    """`owner/name` when origin points at GitHub (https or ssh), else None."""
    url = git(Path(repo), "config", "--get", "remote.origin.url").stdout.strip()
    for prefix in ("https://github.com/", "http://github.com/", "git@github.com:",
                   "ssh://git@github.com/"):
        if url.startswith(prefix):
            return url[len(prefix):].rstrip("/").removesuffix(".git")
    return None


@dataclass(frozen=True)
class RepoInfo:
    """What mining needs to know about the repository before it starts."""

    head: str
    name: str
    pull_heads: dict[int, str]  # PR number → sha of refs/pull/<n>/head, when they were fetched
    shallow_boundary: frozenset[str]  # commits whose parents were cut off by a shallow clone


def inspect(repo: str | Path, rev: str, pull_refs: bool, allow_shallow: bool,
            announce: bool = True) -> RepoInfo:
    """Validate the repository and collect the tips to mine; raise with the fix when unfit.
    `announce` logs what is unusual but fine (detached HEAD, submodules, shallow history)."""
    say = log if announce else _quiet
    head = resolve_rev(repo, rev)
    path = Path(repo).expanduser()
    boundary: frozenset[str] = frozenset()
    if git(path, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        shallow_file = Path(git(path, "rev-parse", "--git-path", "shallow").stdout.strip())
        shallow_file = shallow_file if shallow_file.is_absolute() else path / shallow_file
        boundary = frozenset(shallow_file.read_text().split()) if shallow_file.exists() else frozenset()
        if not allow_shallow:
            raise HarnessError(
                f"data.repo={repo!s} is a shallow clone: its history stops at {len(boundary)} "
                "cut-off commit(s), so the oldest commit would look like one giant change and the "
                "rest of the history would be missing. Fix: `git fetch --unshallow` in that clone, "
                "or set data.mine.allow_shallow=true to mine only the history that is there."
            )
        say.warning("shallow clone: mining the %d commits' worth of history that was fetched; "
                    "the cut-off commits are dropped", len(boundary))
    if git(path, "symbolic-ref", "-q", "HEAD").returncode != 0 and rev == "HEAD":
        say.info("HEAD is detached at %s: mining the history of that commit", head[:12])
    if (path / ".gitmodules").exists() or git(path, "ls-files", "--stage").stdout.count("160000 "):
        say.warning("%s has submodules: their pointer updates are skipped and their own history is "
                    "not mined (mine each submodule with data.repo=<its path>)", repo)
    pulls: dict[int, str] = {}
    if pull_refs:
        out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/pull/").stdout
        for line in out.splitlines():
            ref, sha = line.split()
            parts = ref.split("/")
            if len(parts) == 4 and parts[3] == "head" and parts[2].isdigit():
                pulls[int(parts[2])] = sha
    return RepoInfo(head=head, name=repo_name(path), pull_heads=pulls, shallow_boundary=boundary)
