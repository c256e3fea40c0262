"""The mine stage: git history (+ GitHub pull requests) → `records.jsonl` + `mine_stats.json`.

1. Validate the repository (repo.py) and list the commits to mine: HEAD's history plus the
   pre-squash iterations in fetched `refs/pull/*/head`.
2. Per commit, in worker processes (worker.py; batches scheduled by schedule.py), cached by sha
   (cache.py): cheap filters on one streaming `git log --raw` pass, then diffs, redaction and
   signatures for survivors only.
3. Pull requests and review comments from the GitHub API or an export (github.py, reviews.py).
4. Across commits: reverted commits become negatives (`negatives.jsonl`, never trained on),
   exact dedup, the temporal split (split.py), FIM and docstring sources at the cutoff (sources.py),
   near dedup across the split boundary, decontamination against HumanEval/MBPP, the
   per-author cap.

Record kinds: commit, pr, review_fix, docstring (instruction → response) and fim_source.
`mine_stats.json` counts, per source, what came in, what every filter dropped and what was kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.io import atomic_write_json, jsonl_line, sha256_file, stable_hash, write_jsonl
from harness.mine import classes, dedup, extra, github, sources, split, worker
from harness.mine.cache import CommitCache, code_version
from harness.mine.diffs import open_repo
from harness.mine.preview import write_preview
from harness.mine.repo import git, github_slug, inspect
from harness.mine.reviews import github_records
from harness.mine.scan import GIT_SAFE, iso_utc
from harness.mine.schedule import Workers, mine_commits, prefetch, read_files
from harness.mine.split import CHANGE_KINDS
from harness.mine.worker import KEYS
from harness.redact import Redactor
from harness.rundir import MINE_PREVIEW, MINE_STATS, NEGATIVES, RECORDS

log = logging.getLogger(__name__)
KIND_ORDER = (*CHANGE_KINDS, "docstring", "extra")


def options(mcfg: DictConfig) -> dict:
    """The mine settings (`data.mine`) as a checked plain dict, plus the benchmark files'
    hashes (mined commits are decontaminated against them, so they key the commit cache)."""
    from harness.benchmarks import SHA256

    o = {**OmegaConf.to_container(mcfg, resolve=True), "benchmarks": SHA256}
    _check(o)
    return o


def _check(o: dict) -> None:
    """Settings this stage adds, checked before any work (exit 2 naming the key)."""
    from harness.mine.pairs import FORMATS

    if o["target_format"] not in FORMATS:
        raise HarnessError(f"data.mine.target_format={o['target_format']!r}: expected one of {', '.join(FORMATS)}.")
    for cls, share in o["change_classes"].items():
        if cls not in classes.CHANGE_CLASSES or not isinstance(share, (int, float)) \
                or not 0 <= share <= 1:
            raise HarnessError(f"data.mine.change_classes.{cls}={share!r}: expected one of "
                               f"{', '.join(classes.CHANGE_CLASSES)}, each with a share in [0, 1] (1 keeps all, 0 none).")
    if o["over_budget"] not in ("drop", "keep"):
        raise HarnessError(f"data.mine.over_budget={o['over_budget']!r}: expected drop or keep.")
    if not isinstance(o["max_parts"], int) or o["max_parts"] < 1:
        raise HarnessError(f"data.mine.max_parts={o['max_parts']!r}: expected an integer >= 1.")


def _lines(repo: Path, *args: str) -> list[str]:
    res = git(repo, *GIT_SAFE, *args)
    if res.returncode != 0:
        raise HarnessError(f"`git {args[0]}` failed in {repo}: {res.stderr.strip()}")
    return res.stdout.split()


class _Clock:
    """Seconds per phase, for the log."""

    def __init__(self) -> None:
        self.t, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.t, 2)
        self.t = now


class Stats:
    """Counts per source: what came in, what each filter dropped (in order), what was kept."""

    def __init__(self) -> None:
        self.sources: dict[str, dict] = defaultdict(lambda: {"in": 0, "dropped": Counter()})
        self.dropped: Counter = Counter()
        self.cuts: dict[str, Counter] = defaultdict(Counter)  # per kind: changes split, parts made

    def seen(self, kind: str, n: int = 1) -> None:
        self.sources[kind]["in"] += n

    def drop(self, kind: str, reason: str, n: int = 1) -> None:
        if n:
            self.sources[kind]["dropped"][reason] += n
            self.dropped[reason] += n

    def report(self, kept: list[dict]) -> dict:
        out = Counter(r["kind"] for r in kept)
        return {k: {"in": v["in"], "dropped": dict(v["dropped"]), "out": out.get(k, 0),
                    **({"cut": dict(self.cuts[k])} if self.cuts.get(k) else {})}
                for k, v in sorted(self.sources.items())}


def _pull_commits(repo: Path, pulls: dict[int, str], head: str) -> dict[str, int]:
    """sha → PR number for commits only reachable from fetched refs/pull/<n>/head (one git
    process: `--source` names the ref each commit was reached from)."""
    if not pulls:
        return {}
    stdin = "".join(f"refs/pull/{n}/head\n" for n in sorted(pulls)) + f"^{head}\n"
    res = subprocess.run(["git", "-C", str(repo), *GIT_SAFE, "log", "--stdin", "--source",
                          "--format=%H %S"], input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(f"`git log` of the pull-request refs failed in {repo}: {res.stderr.strip()}")
    out = {}
    for line in res.stdout.splitlines():
        sha, ref = line.split(" ", 1)
        out[sha] = int(ref.split("/")[2])
    return out


def _branch_commits(repo: Path, head: str) -> dict[str, str]:
    """Commit sha → the mainline merge that brought it in (what `git rev-list M^2 ^M^1` gives
    for each merge M), for every commit of HEAD's history off the first-parent line: one git
    process, then one walk, oldest mainline commit first."""
    parents = {}
    for line in _lines_of(repo, "rev-list", "--parents", head):
        sha, *ps = line.split()
        parents[sha] = ps
    mainline = [head]
    while parents.get(mainline[-1]):
        mainline.append(parents[mainline[-1]][0])
    seen, out = set(), {}
    for m in reversed(mainline):
        stack = list(parents.get(m, [])[1:])
        while stack:
            c = stack.pop()
            if c in seen or c not in parents:
                continue
            seen.add(c)
            out[c] = m
            stack += parents[c]
        seen.add(m)
    return out


def _lines_of(repo: Path, *args: str) -> list[str]:
    res = git(repo, *GIT_SAFE, *args)
    if res.returncode != 0:
        raise HarnessError(f"`git {args[0]}` failed in {repo}: {res.stderr.strip()}")
    return res.stdout.splitlines()


def _weigh_classes(records: list[dict], shares: dict, stats: Stats) -> list[dict]:
    """Keep `shares[class]` of each class of change (classes.CHANGE_CLASSES): all, none,
    or a stable sample by record id (the same records on every run)."""
    out = []
    for r in records:
        share = float(shares.get(r.get("change_class") or "code", 1.0))
        if share >= 1 or int(r["id"][:8], 16) / 0xFFFFFFFF < share:
            out.append(r)
        else:
            stats.drop(r["kind"], f"{r['change_class']}_only")
    return out


def _author_cap(records: list[dict], share: float, stats: Stats) -> list[dict]:
    """No author contributes more than `share` of the train change records (a repository with
    one author is left alone: there is no one else to balance)."""
    pool = [r for r in records if r["split"] == "train" and r["kind"] in CHANGE_KINDS]
    by_author = defaultdict(list)
    for r in pool:
        by_author[r["author_id"]].append(r)
    if share >= 1 or len(by_author) < 2:
        return records
    limit = max(1, math.ceil(share * len(pool)))
    dropped = set()
    for rs in by_author.values():
        for r in sorted(rs, key=lambda r: r["id"])[limit:]:  # id order: a stable random sample
            dropped.add(r["id"])
            stats.drop(r["kind"], "author_cap")
    return [r for r in records if r["id"] not in dropped]


def _github(o: dict, data_repo: str | Path, cache_dir: str | Path, repo, name: str, head: str,
            cache: CommitCache | None, redactor: Redactor, stats: Stats) -> tuple[list[dict], dict]:
    """Pull-request and review records from the GitHub API or an export (`o["github"]`);
    `data_repo`: data.repo as configured (its origin names the GitHub repository),
    `cache_dir`: the harness cache (API replies are kept there)."""
    g = o["github"]
    if not (g["api"] or g["export"]):
        return [], {}
    if g["export"]:
        bundles, info = github.load_export(g["export"], redactor), {"export": str(g["export"])}
    else:
        slug = g["repo"] or github_slug(data_repo)
        if not slug:
            raise HarnessError("data.mine.github.api=true but the repository's origin is not on "
                               "GitHub. Fix: set data.mine.github.repo=owner/name.")
        client = github.GitHubClient(
            g["api_url"], github.token_from_env(g["token_env"]),
            Path(cache_dir).expanduser() / "mine" / "github" / f"{slug.replace('/', '__')}.jsonl",
            g["max_wait_s"], g["timeout_s"], redactor)
        bundles = github.fetch_bundles(client, slug, head, g["max_prs"])
        info = {"repo": slug, "api_calls": client.calls}
    key = stable_hash([[b["pull"]["number"], b] for b in bundles])
    hit = cache.get([f"github:{key}"]) if cache else {}
    if hit:
        records, drops = hit[f"github:{key}"]["records"], hit[f"github:{key}"]["drops"]
    else:
        records, counters = github_records(bundles, repo, name, o, redactor, worker.bench())
        drops = {k: dict(v) for k, v in counters.items()}
        if cache:
            cache.put([{"sha": f"github:{key}", "records": records, "drops": drops}])
    for kind, d in drops.items():
        stats.seen(kind, d.pop("in", 0))
        for reason, n in d.items():
            stats.drop(kind, reason, n)
    return records, {**info, "pull_requests": len(bundles)}


def _commit_records(results: dict[str, dict], shas: list[str], pulls: dict[str, int],
                    branches: dict[str, str], name: str, stats: Stats) -> tuple[list[dict], list[dict]]:
    """(records, negatives) of the mined commits; reverted commits become negatives. A merged
    pull request is one record: the commits of its branch (`branches`: sha → merge) are
    dropped when the merge made a record (else they are the only record of that work)."""
    reverts = {r["target"]: r["sha"] for r in results.values() if r["kind"] == "revert"}
    merged = {s for s, r in results.items() if r["source"] == "git:merge" and not r["drop"] and r["records"]}
    records, negatives = [], []
    for sha in shas:
        r = results[sha]
        stats.seen(r["kind"])
        for reason, n in r["files_dropped"].items():
            stats.drop("files", reason, n)
        if r["drop"]:
            stats.drop(r["kind"], r["drop"])
            continue
        if r.get("cut") == "split":  # one change made several records, per file or region
            stats.cuts[r["kind"]]["split_changes"] += 1
            stats.cuts[r["kind"]]["split_records"] += len(r["records"])
        elif r.get("cut") == "over_budget":  # kept whole, longer than the budget: truncated later
            stats.cuts[r["kind"]]["over_budget"] += 1
        for rec in r["records"]:
            rec = {**rec, "repo": name, "pr": rec["pr"] or pulls.get(sha)}
            if (sha in pulls or branches.get(sha) in merged) and rec["kind"] != "review_fix":
                stats.drop(rec["kind"], "pr_branch_commit")  # its change is in the merged PR
            elif sha in reverts and reverts[sha] not in reverts:  # reverted, and not re-landed
                negatives.append({**rec, "negative": True, "reverted_by": reverts[sha]})
                stats.drop(rec["kind"], "reverted")
            else:
                records.append(rec)
    return records, negatives


def _file_sources(repo: Path, info, mainline: list[str], results: dict, records: list[dict],
                  cutoff: str | None, o: dict, cache: CommitCache | None, workers: Workers,
                  prefetched: dict[str, Future], queued: Callable[[], object]) -> tuple[list[dict], str]:
    """FIM and docstring records: the train tree at the last mainline commit before the cutoff,
    and the files test commits changed; (records, the train tree's commit). `queued()` runs
    while the workers read files."""
    fim_sha = split.fim_commit(mainline, {s: r["committed_at"] for s, r in results.items()}, cutoff)
    train = sources.tree_blobs(open_repo(repo), fim_sha, o)
    read_train = read_files(repo, [(p, b, None) for p, b in train], o, cache, workers, prefetched)
    # one held-out FIM file per path: the newest test commit's version, holes at its lines
    newest = {path: (r, path, blob, old)
              for r in sorted(records, key=lambda r: r["committed_at"])
              if r["split"] == "test" and r["kind"] == "commit"
              for path, blob, old in results[r["shas"][0]]["fim"] if sources.fim_ok(path, o)}
    test = list(newest.values())
    read_test = read_files(repo, [(p, b, (r["shas"][0], old)) for r, p, b, old in test], o, cache,
                            workers, {})
    queued()
    out = []
    for (path, _), d in zip(train, read_train(), strict=True):
        if d is not None:
            out += sources.file_records(path, fim_sha, results[fim_sha]["committed_at"], "train",
                                        d, info.name)
    for (r, path, *_), d in zip(test, read_test(), strict=True):
        if d is not None:
            out += sources.file_records(path, r["shas"][0], r["committed_at"], "test", d,
                                        info.name, d["added"])
    return out, fim_sha


def _select(records: list[dict], files: list[dict], o: dict, stats: Stats) -> tuple[list[dict], Counter]:
    """Exact and near dedup (train first, so test never repeats train), decontamination and
    the author cap; (kept records, contamination counts per benchmark)."""
    fim = [f for f in files if f["kind"] == "fim_source"]
    # a file of a line or two has no context to fill in from (an __init__ docstring)
    short = [f for f in fim if sum(1 for line in f["content"].split("\n") if line.strip())
             < o["fim_min_lines"]]
    short_ids = {f["id"] for f in short}
    fim, dups = dedup.exact_dedup([f for f in fim if f["id"] not in short_ids])
    dropped = [(r, "too_short") for r in short] + [(r, "exact_duplicate") for r in dups]
    # oldest first; on a tie the richer source wins (a commit over the docstring pair of the
    # function it added, dated at the same tree)
    pairs = sorted(records + [f for f in files if f["kind"] == "docstring"],
                   key=lambda r: (r["split"] != "train", r["committed_at"],
                                  KIND_ORDER.index(r["kind"]), r["id"]))
    pairs, dups = dedup.exact_dedup(pairs)
    dropped += [(r, "exact_duplicate") for r in dups]
    pairs, near = dedup.near_dedup(pairs, o["dedup"]["threshold"], o["dedup"]["num_perm"])
    dropped += near
    kept = [r for r in pairs + fim if not r.get("_contaminated")]
    dirty = [r for r in pairs + fim if r.get("_contaminated")]
    dropped += [(r, "contaminated") for r in dirty]
    for r, reason in dropped:
        stats.drop(r["kind"], reason)
    kept = _author_cap(kept, o["max_author_share"], stats)
    return kept, Counter(r["_contaminated"].split("/")[0] for r in dirty)


def run(cfg: DictConfig, out: Path) -> dict:
    o = options(cfg.data.mine)
    extra_files = extra.paths(cfg.data.get("extra"))
    extra_rows = extra.read(extra_files)  # checked before any work
    info = inspect(cfg.data.repo, cfg.data.rev, o["pull_refs"], o["allow_shallow"])
    repo = Path(cfg.data.repo).expanduser().resolve()
    o["vendored_paths"] = [*o["vendored_paths"], *classes.linguist_patterns(repo, info.head)]
    log.info("mining %s (%s) at %s", info.name, repo, info.head[:12])
    cache = (CommitCache(Path(cfg.cache_dir).expanduser() / "mine" / "commits.sqlite",
                         stable_hash({k: o[k] for k in KEYS})) if o["cache"] else None)
    redactor, stats, clock = Redactor(), Stats(), _Clock()
    with contextlib.closing(cache) if cache else contextlib.nullcontext(), Workers(o) as workers:
        with ThreadPoolExecutor(3) as git_calls:  # git runs while `prepare` computes
            pulls = git_calls.submit(_pull_commits, repo, info.pull_heads, info.head)
            listed = git_calls.submit(_lines, repo, "rev-list", "--reverse", "--date-order", "--timestamp",
                                      info.head, *info.pull_heads.values())
            mainline = git_calls.submit(_lines, repo, "rev-list", "--first-parent", "--reverse", info.head)
            branches = git_calls.submit(_branch_commits, repo, info.head)
            worker.prepare(o)  # before the workers fork: they inherit what it builds
            pulls, listed, mainline = pulls.result(), listed.result(), mainline.result()
            branches = branches.result()
        workers.freeze()
        shas, date_of = listed[1::2], {s: iso_utc(int(t)) for t, s in zip(listed[0::2], listed[1::2], strict=True)}
        prefetched: dict[str, Future] = {}
        results, reused = mine_commits(
            repo, shas, o, set(info.shallow_boundary), cache, workers,
            lambda done: prefetched.update(prefetch(workers, repo, mainline, date_of, done, o, cache)))
        records, negatives = _commit_records(results, shas, pulls, branches, info.name, stats)
        records = _weigh_classes(records, o["change_classes"], stats)
        clock.lap("commits")

        gh_records, gh_info = _github(o, cfg.data.repo, cfg.cache_dir, open_repo(repo), info.name,
                                      info.head, cache, redactor, stats)
        api_prs = {r["pr"] for r in gh_records if r["kind"] == "pr"}
        superseded = {r["id"] for r in records if r["kind"] == "pr" and r["pr"] in api_prs}
        stats.drop("pr", "superseded_by_api", len(superseded))
        records = [r for r in records if r["id"] not in superseded] + gh_records
        clock.lap("github")
        extra_chats, extra_fims = extra.load(extra_rows, o, redactor, worker.bench())
        if extra_chats:
            stats.seen("extra", len(extra_chats))
        records += extra_chats

        # exact duplicates go before the split, so the newest fraction counts distinct changes
        records, dups = dedup.exact_dedup(sorted(records, key=lambda r: (r["committed_at"], r["id"])))
        for r in dups:
            stats.drop(r["kind"], "exact_duplicate")
        cutoff = split.cutoff([r["committed_at"] for r in records if r["kind"] == "commit"], o)
        for r in [*records, *negatives]:
            r["split"] = "test" if cutoff and r["committed_at"] >= cutoff else "train"
        encoded: dict[str, str] = {}  # final from here on: encoded while the workers read files
        files, fim_sha = _file_sources(
            repo, info, mainline, results, records, cutoff, o, cache, workers, prefetched,
            lambda: encoded.update((r["id"], jsonl_line(_public(r))) for r in records))
        for f in extra_fims:
            f["split"] = "test" if cutoff and f["committed_at"] >= cutoff else "train"
        files += extra_fims
        for f in files:
            stats.seen(f["kind"])
        clock.lap("files")
        records, contamination = _select(records, files, o, stats)
        clock.lap("dedup")

    if not records:
        raise HarnessError(
            f"nothing survived mining {cfg.data.repo} ({len(shas)} commits; dropped: "
            f"{dict(stats.dropped)}). Fix: loosen data.mine (e.g. data.mine.min_changed_lines, "
            f"data.mine.max_changed_lines) or mine a repository with more history."
        )
    # records written with a redacted secret, per secret type
    secrets = Counter(kind for r in [*records, *negatives] for kind in r["redactions"])
    split_info = split.report(records, cutoff, o)
    records.sort(key=lambda r: (r["split"], r["committed_at"], r["kind"], r["id"]))
    count = Counter((r["kind"], r["split"]) for r in records)
    files_dropped = dict(stats.sources.pop("files", {"dropped": {}})["dropped"])
    stats.dropped -= Counter(files_dropped)
    summary = {
        "repo": info.name, "head": info.head, "commits_seen": len(shas), "cutoff": cutoff,
        "fim_tree_sha": fim_sha, "dropped": dict(stats.dropped), "sources": stats.report(records),
        "files_dropped": files_dropped, "secrets_redacted": dict(secrets),
        "decontaminated": dict(contamination), "negatives": len(negatives),
        "cache": {"commits_reused": reused, "commits_mined": len(shas) - reused},
        "github": gh_info or None, "split": split_info,
        "extra": {"files": [str(f) for f in extra_files], "chat_in": len(extra_chats), "fim_in": len(extra_fims),
                  "kept": dict(Counter(r["kind"] for r in records if r.get("origin") == "extra"))}
        if extra_files else None,
        "kept": {f"{k}/{s}": n for (k, s), n in sorted(count.items())},
    }
    write_jsonl(out / RECORDS, (encoded.get(r["id"]) or _public(r) for r in records))
    write_jsonl(out / NEGATIVES, (_public(r) for r in negatives))
    atomic_write_json(out / MINE_STATS, summary)
    write_preview(records, int(o["preview"]), int(cfg.seed), out / MINE_PREVIEW)
    clock.lap("write")
    log.info("mined %d records (%s) and %d negatives → %s; dropped %s; seconds: %s", len(records),
             summary["kept"], len(negatives), out, dict(stats.dropped), clock.laps)
    return summary


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def fingerprint_inputs(cfg: DictConfig) -> dict:
    """What makes a previous mine output stale besides data.mine: the commits mined, the
    fetched pull-request heads, the export file's content, and the miner's own code (a
    stage-cache entry written by an older miner holds what that miner got wrong)."""
    o = options(cfg.data.mine)
    info = inspect(cfg.data.repo, cfg.data.rev, o["pull_refs"], allow_shallow=True, announce=False)
    export = o["github"]["export"]
    return {"head": info.head, "repo": str(Path(cfg.data.repo).expanduser().resolve()),
            "extra": [sha256_file(p) for p in extra.paths(cfg.data.get("extra"))],
            "pulls": stable_hash(sorted(info.pull_heads.items())), "code": code_version(),
            "export": sha256_file(Path(export).expanduser()) if export and Path(export).expanduser().is_file() else export}
