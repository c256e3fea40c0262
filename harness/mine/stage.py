"""The mine stage: git history → `records.jsonl` + `mine_stats.json`.

Commits are read with PyDriller (message, author, per-file diffs read once per commit),
filtered cheaply, split by time (the newest `test_fraction` of surviving commits is the test
split; nothing dated at or after the cutoff is trained on), and turned into records:

- `commit`: instruction = commit message, response = the unified diff.
- `fim_source`: a source file for fill-in-the-middle. Train: every matching file in the tree
  at the last commit before the cutoff. Test: files changed by test commits, with the line
  numbers those commits added (held-out holes are cut there, so their text was never trained on).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from harness.errors import HarnessError
from harness.io import atomic_write_json, write_jsonl
from harness.mine.filters import bot_reason, message_reason, path_skipped, size_reason
from harness.mine.repo import repo_name, resolve_rev, shared_clone

log = logging.getLogger(__name__)


def author_id(email: str) -> str:
    """Stable pseudonym: records carry no e-mail addresses."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def _record_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _unified_diff(files: list[Any]) -> str:
    chunks = []
    for mf in files:
        old, new = mf.old_path or "/dev/null", mf.new_path or "/dev/null"
        a = f"a/{old}" if mf.old_path else old
        b = f"b/{new}" if mf.new_path else new
        chunks.append(f"--- {a}\n+++ {b}\n{mf.diff.rstrip()}\n")
    return "".join(chunks)


def mine_commits(clone: Path, head: str, mcfg: DictConfig, name: str) -> tuple[list[dict], list[tuple[str, str]], Counter]:
    """Walk history oldest → newest; return kept commit records, every (sha, date), drop counts."""
    from pydriller import Repository

    drops: Counter = Counter()
    kept: list[dict] = []
    timeline: list[tuple[str, str]] = []
    for c in tqdm(Repository(str(clone), to_commit=head).traverse_commits(), desc="mining commits", unit="commit"):
        date = c.committer_date.isoformat()
        timeline.append((c.hash, date))
        if mcfg.skip_merges and c.merge:
            drops["merge"] += 1
            continue
        reason = bot_reason(c.author.name or "", c.author.email or "", c.msg, mcfg.bot_patterns) \
            or message_reason(c.msg, mcfg.min_message_chars)
        if reason:
            drops[reason] += 1
            continue
        files = [mf for mf in c.modified_files  # one `git diff` per commit: read it once
                 if mf.diff and not path_skipped(mf.new_path or mf.old_path, mcfg.skip_paths)]
        if not files:
            drops["no_text_changes"] += 1
            continue
        added = sum(mf.added_lines for mf in files)
        deleted = sum(mf.deleted_lines for mf in files)
        reason = size_reason(added + deleted, len(files), mcfg.min_changed_lines,
                             mcfg.max_changed_lines, mcfg.max_files)
        if reason:
            drops[reason] += 1
            continue
        kept.append({
            "id": _record_id("commit", c.hash),
            "kind": "commit",
            "repo": name,
            "shas": [c.hash],
            "authored_at": c.author_date.isoformat(),
            "committed_at": date,
            "author_id": author_id(c.author.email or ""),
            "instruction": c.msg.strip(),
            "response": _unified_diff(files),
            "files": [mf.new_path or mf.old_path for mf in files],
            "added": added,
            "deleted": deleted,
            "redactions": [],
            # kept for the FIM test sources, dropped before writing
            "_fim": [(mf.new_path, mf.source_code, [n for n, _ in mf.diff_parsed["added"]])
                     for mf in files if mf.new_path and mf.source_code is not None],
        })
    return kept, timeline, drops


def split_by_time(commits: list[dict], test_fraction: float) -> str | None:
    """Label records train/test in place; return the cutoff date (first test commit's date)."""
    commits.sort(key=lambda r: r["committed_at"])
    n_test = min(len(commits) - 1, max(1, math.floor(test_fraction * len(commits)))) if len(commits) > 1 else 0
    cutoff = commits[-n_test]["committed_at"] if n_test else None
    for r in commits:
        r["split"] = "test" if cutoff and r["committed_at"] >= cutoff else "train"
    return cutoff


def _fim_ok(path: str, mcfg: DictConfig) -> bool:
    return path.endswith(tuple(mcfg.fim_extensions)) and not path_skipped(path, mcfg.skip_paths)


def train_fim_sources(clone: Path, sha: str, mcfg: DictConfig, name: str, date: str) -> list[dict]:
    """Every matching file in the tree at `sha` (the last commit before the cutoff)."""
    import git

    out = []
    tree = git.Repo(clone).commit(sha).tree
    for blob in tree.traverse():
        if blob.type != "blob" or not _fim_ok(blob.path, mcfg) or blob.size > mcfg.fim_max_file_bytes:
            continue
        data = blob.data_stream.read()
        if b"\0" in data:
            continue
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.append({"id": _record_id("fim", sha, blob.path), "kind": "fim_source", "repo": name,
                    "shas": [sha], "committed_at": date, "path": blob.path, "content": content,
                    "split": "train", "redactions": []})
    return out


def test_fim_sources(test_commits: list[dict], mcfg: DictConfig) -> list[dict]:
    out = []
    for r in test_commits:
        for path, content, added in r["_fim"]:
            if _fim_ok(path, mcfg) and added and len(content.encode()) <= mcfg.fim_max_file_bytes:
                out.append({"id": _record_id("fim", r["shas"][0], path), "kind": "fim_source",
                            "repo": r["repo"], "shas": r["shas"], "committed_at": r["committed_at"],
                            "path": path, "content": content, "added_lines": added,
                            "split": "test", "redactions": []})
    return out


def run(cfg: DictConfig, out: Path) -> dict:
    mcfg = cfg.data.mine
    head = resolve_rev(cfg.data.repo, cfg.data.rev)
    name = repo_name(cfg.data.repo)
    log.info("mining %s (%s) at %s", name, cfg.data.repo, head[:12])
    with shared_clone(cfg.data.repo) as clone:
        commits, timeline, drops = mine_commits(clone, head, mcfg, name)
        cutoff = split_by_time(commits, mcfg.test_fraction)
        before = [(sha, d) for sha, d in timeline if cutoff is None or d < cutoff]
        fim_sha, fim_date = before[-1] if before else timeline[0]
        fim = train_fim_sources(clone, fim_sha, mcfg, name, fim_date)
    fim += test_fim_sources([r for r in commits if r["split"] == "test"], mcfg)
    for r in commits:
        del r["_fim"]
    records = commits + fim
    if not records:
        raise HarnessError(
            f"nothing survived mining {cfg.data.repo} ({len(timeline)} commits; dropped: "
            f"{dict(drops)}). Fix: loosen data.mine (e.g. data.mine.min_changed_lines, "
            f"data.mine.max_changed_lines) or mine a repository with more history."
        )
    count = Counter((r["kind"], r["split"]) for r in records)
    stats = {
        "repo": name, "head": head, "commits_seen": len(timeline), "dropped": dict(drops),
        "cutoff": cutoff, "fim_tree_sha": fim_sha,
        "kept": {f"{k}/{s}": n for (k, s), n in sorted(count.items())},
    }
    write_jsonl(out / "records.jsonl", records)
    atomic_write_json(out / "mine_stats.json", stats)
    log.info("mined %d records (%s); dropped %s", len(records), stats["kept"], dict(drops))
    return stats


def fingerprint_inputs(cfg: DictConfig) -> dict:
    """What makes a previous mine output stale: the commit mined (plus data.mine settings)."""
    return {"head": resolve_rev(cfg.data.repo, cfg.data.rev), "repo": str(Path(cfg.data.repo).resolve())}
