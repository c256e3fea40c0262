"""The mine stage: git history (+ GitHub pull requests) → `records.jsonl` + `mine_stats.json`.

1. Validate the repository (repo.py) and list the commits to mine: HEAD's history plus the
   pre-squash iterations in fetched `refs/pull/*/head`.
2. Per commit, in worker processes (worker.py), cached by sha (cache.py): cheap filters on one
   streaming `git log --raw` pass, then diffs, redaction and signatures for survivors only.
3. Pull requests and review comments from the GitHub API or an export (github.py, reviews.py).
4. Across commits: reverted commits become negatives (`negatives.jsonl`, never trained on),
   exact dedup, the temporal split, FIM and docstring sources at the cutoff (sources.py),
   near dedup across the split boundary, decontamination against HumanEval/MBPP, the
   per-author cap.

Record kinds: commit, pr, review_fix, docstring (instruction → response) and fim_source.
`mine_stats.json` counts, per source, what came in, what every filter dropped and what was kept.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import logging
import math
import multiprocessing
import os
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from harness.errors import HarnessError
from harness.io import atomic_write_json, jsonl_line, sha256_file, stable_hash, write_jsonl
from harness.mine import classes, dedup, extra, github, sources, worker
from harness.mine.cache import CommitCache
from harness.mine.diffs import open_repo
from harness.mine.preview import write_preview
from harness.mine.repo import git, github_slug, inspect
from harness.mine.reviews import github_records
from harness.mine.scan import GIT_SAFE, iso_utc
from harness.mine.secrets import Redactor
from harness.mine.worker import KEYS, blob_chunk, mine_chunk

log = logging.getLogger(__name__)
CHANGE_KINDS = ("commit", "pr", "review_fix")
KIND_ORDER = (*CHANGE_KINDS, "docstring", "extra")


def options(cfg: DictConfig) -> dict:
    from harness.benchmarks import SHA256

    o = {**OmegaConf.to_container(cfg.data.mine, resolve=True), "benchmarks": SHA256}
    _check(o)
    return o


def _check(o: dict) -> None:
    """Settings this stage adds, checked before any work (exit 2 naming the key)."""
    from harness.mine.pairs import FORMATS

    if o["target_format"] not in FORMATS:
        raise HarnessError(f"data.mine.target_format={o['target_format']!r}: expected one of {', '.join(FORMATS)}.")
    for cls, share in o["change_classes"].items():
        if cls not in ("docs", "tests", "formatting", "code") or not isinstance(share, (int, float)) \
                or not 0 <= share <= 1:
            raise HarnessError(f"data.mine.change_classes.{cls}={share!r}: expected docs, tests, formatting "
                               "or code, each with a share in [0, 1] (1 keeps all, 0 none).")
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


class _Workers:
    """The worker processes of one run, forked once (after `worker.prepare`) and shared by its
    phases, so that no phase pays for a second start; none when one process is asked for."""

    def __init__(self, o: dict) -> None:
        self.n, self.pool, self.frozen = _workers(o), None, False

    def freeze(self) -> None:
        """Exempt what exists now from garbage collection until the run ends: forked workers
        then keep sharing its memory pages with this process instead of copying them."""
        gc.freeze()
        self.frozen = True

    def __enter__(self) -> _Workers:
        if self.n > 1:
            # fork: workers start in milliseconds with everything imported (the benchmark
            # index included), and never re-run the caller's __main__ as spawn would
            self.pool = ProcessPoolExecutor(max_workers=self.n,
                                            mp_context=multiprocessing.get_context("fork"),
                                            initializer=worker.die_with_parent, initargs=(os.getpid(),))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool:
            self.pool.shutdown(cancel_futures=True)
        if self.frozen:
            gc.unfreeze()

    def submit(self, fn, repo: Path, batches: list[list], o: dict) -> dict:
        """{job: batch size} for `fn(repo, batch, o)` of every batch, for `results`: futures, or
        without a pool the calls themselves, made as `results` reaches them."""
        calls = [functools.partial(fn, str(repo), b, o) for b in batches]
        return {self.pool.submit(c) if self.pool else c: len(b) for c, b in zip(calls, batches, strict=True)}

    def results(self, jobs: dict, desc: str, unit: str) -> Iterator[list]:
        """The result of every job of `submit`, as each completes, with a progress bar."""
        with tqdm(total=sum(jobs.values()), desc=desc, unit=unit, disable=not jobs) as bar:
            for job in (as_completed(jobs) if self.pool else jobs):
                yield job.result() if self.pool else job()
                bar.update(jobs[job])


def _workers(o: dict) -> int:
    return int(o["workers"]) or os.cpu_count() or 1


def _batches(items: list, size: int, workers: int) -> list[list]:
    """Batches of at most `size` items, evenly sized and a multiple of `workers` in number, so
    that no worker idles while another finishes a last batch. Few large batches: every batch
    starts its own git processes, which cost ~10 ms each in pack and delta-cache set-up."""
    if not items:
        return []
    n = min(len(items), math.ceil(math.ceil(len(items) / max(1, size)) / workers) * workers)
    return [items[i * len(items) // n:(i + 1) * len(items) // n] for i in range(n)]


def _mine_commits(repo: Path, shas: list[str], o: dict, boundary: set[str], cache: CommitCache | None,
                  workers: _Workers, last_round: Callable[[dict], object]) -> tuple[dict[str, dict], int]:
    """Every commit's result, from the cache or mined now in parallel; (results, reused).
    Batches are mined newest first; `last_round(results so far)` runs when only the last round
    of batches is left, if there is more than one round."""
    results = cache.get(shas) if cache else {}
    reused = len(results)
    todo = [s for s in shas if s not in results]
    batches = _batches(todo, int(o["chunk_size"]), workers.n)[::-1]
    log.info("%d commits: %d from the cache, %d to mine in %d batch(es)", len(shas), reused,
             len(todo), len(batches))
    # each batch is cached by its worker as it completes: a crash loses only those in flight
    fn = functools.partial(mine_chunk, boundary=boundary, cache=cache.spec if cache else None)
    jobs = workers.submit(fn, repo, batches, o)
    for done, batch in enumerate(workers.results(jobs, "mining commits", "commit"), 1):
        results.update((r["sha"], r) for r in batch)
        if done == len(batches) - workers.n > 0:  # the last round is under way
            last_round(results)
    return results, reused


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
    """Keep `shares[class]` of each class of change (docs, tests, formatting, code): all, none,
    or a stable sample by record id (the same records on every run)."""
    out = []
    for r in records:
        share = float(shares.get(r.get("change_class") or "code", 1.0))
        if share >= 1 or int(r["id"][:8], 16) / 0xFFFFFFFF < share:
            out.append(r)
        else:
            stats.drop(r["kind"], f"{r['change_class']}_only")
    return out


def _cutoff(dates: list[str], o: dict) -> str | None:
    """Test = records committed at or after the cutoff: a date, or the first of the (sorted)
    dates in the newest `test_fraction` of their time span (by time, not by count: a history
    busy in its first years would otherwise hold out its last decade), leaving each split at
    least one record."""
    if o.get("test_cutoff"):
        try:
            when = datetime.fromisoformat(str(o["test_cutoff"]))
        except ValueError as e:
            raise HarnessError(f"data.mine.test_cutoff={o['test_cutoff']!r} is not an ISO date. "
                               "Fix: use e.g. 2024-06-01 or 2024-06-01T12:00:00+00:00.") from e
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
    if len(dates) < 2:
        return None
    first, last = datetime.fromisoformat(dates[0]), datetime.fromisoformat(dates[-1])
    at = (last - (last - first) * float(o["test_fraction"])).isoformat()
    return dates[min(max(bisect.bisect_left(dates, at), 1), len(dates) - 1)]


def _split_report(records: list[dict], cutoff: str | None, o: dict) -> dict:
    """The split's dates and sizes (change records), with a warning when one side is empty or
    tiny (under 5% of the records, or under 10 of them)."""
    sides = {s: sorted(r["committed_at"] for r in records if r["split"] == s and r["kind"] in CHANGE_KINDS)
             for s in ("train", "test")}
    out = {"cutoff": cutoff, "by": "date" if o.get("test_cutoff") else f"newest {o['test_fraction']} of the time span",
           **{s: {"records": len(d), "from": d[0] if d else None, "to": d[-1] if d else None}
              for s, d in sides.items()}}
    total = sum(len(d) for d in sides.values())
    small = [s for s, d in sides.items() if len(d) < max(10, 0.05 * total)]
    if small and total:
        out["warning"] = (f"the {' and '.join(small)} split holds {', '.join(str(len(sides[s])) for s in small)} "
                          f"of {total} change records (cutoff {cutoff}). Fix: set data.mine.test_cutoff to a date, "
                          "or data.mine.test_fraction to another share of the history's time span.")
        log.warning("%s", out["warning"])
    return out


def _fim_commit(mainline: list[str], date_of: dict[str, str], cutoff: str | None) -> str:
    """The train FIM tree's commit: the last mainline commit before the cutoff."""
    before = [s for s in mainline if s in date_of and (cutoff is None or date_of[s] < cutoff)]
    return before[-1] if before else mainline[0]


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


def _blob_key(path: str, blob: str, change: tuple[str, str | None] | None) -> str:
    return f"blob:{blob}:{Path(path).suffix}:{stable_hash(change)[:12]}"


def _deal(items: list, n: int) -> list[list]:
    """`items` dealt out over `n` batches like cards: whole files are few but heavy (parse,
    redact, sign), so large and small ones are shared evenly."""
    n = min(len(items), n)
    return [items[i::n] for i in range(n)]


def _guess_cutoff(done: dict[str, dict], date_of: dict[str, str], o: dict) -> str | None:
    """The cutoff `_cutoff` will find, guessed from the results of the newest commits (`done`):
    their kept commit records, and the share kept extrapolated to all commits (`date_of`)."""
    if o.get("test_cutoff"):
        return _cutoff([], o)
    # the time span of the kept records is close to the whole history's; the newest batches
    # tell whether records reach the newest commits
    kept = [r["committed_at"] for r in done.values() if r["kind"] == "commit" and not r["drop"] and r["records"]]
    dates = sorted(date_of.values())
    return _cutoff([d for d in dates if d <= max(kept)] if kept else dates, o)


def _prefetch(workers: _Workers, repo: Path, mainline: list[str], date_of: dict[str, str],
              done: dict[str, dict], o: dict, cache: CommitCache | None) -> dict[str, Future]:
    """{blob key: future} reading the train FIM tree at the cutoff the newest commits' results
    (`done`) suggest, queued behind the commit batches so that they keep the workers busy while
    the last batches finish. The real cutoff (from all kept commits) is known only once every
    commit is mined; the tree then is mostly the same files, and only those that differ are
    read at that point."""
    if workers.pool is None:  # one process: nothing runs ahead
        return {}
    fim_sha = _fim_commit(mainline, date_of, _guess_cutoff(done, date_of, o))
    items = [(_blob_key(p, b, None), p, b, None) for p, b in sources.tree_blobs(open_repo(repo), fim_sha, o)]
    hits = cache.get([k for k, *_ in items]) if cache else {}
    # small batches: whichever worker finishes its last commit batch first takes the next
    batches = _deal([i for i in items if i[0] not in hits], 4 * workers.n)
    fn = functools.partial(blob_chunk, cache=cache.spec if cache else None)
    return {key: job for job, batch in zip(workers.submit(fn, repo, batches, o), batches, strict=True)
            for key, *_ in batch}


def _read_files(repo: Path, items: list[tuple[str, str, tuple[str, str | None] | None]], o: dict,
                cache: CommitCache | None, workers: _Workers,
                prefetched: dict[str, Future]) -> Callable[[], list[dict | None]]:
    """Start deriving the data of each (path, blob, change), cached: change is None for a train
    file, (commit, path before) for a test file (see `worker.blob_chunk`). The call returned
    waits for the data, in the order of `items`."""
    keys = [_blob_key(p, b, a) for p, b, a in items]
    hits = cache.get(keys) if cache else {}
    todo = list({k: (k, p, b, a) for k, (p, b, a) in zip(keys, items, strict=True)
                 if k not in hits and k not in prefetched}.values())
    jobs = workers.submit(functools.partial(blob_chunk, cache=cache.spec if cache else None), repo,
                          _deal(todo, workers.n), o)

    def wait() -> list[dict | None]:
        for batch in workers.results(jobs, "reading files", "file"):
            hits.update((r["sha"], r) for r in batch)
        for future in {prefetched[k] for k in keys if k in prefetched}:
            hits.update((r["sha"], r) for r in future.result())
        return [hits[k]["data"] for k in keys]
    return wait


def _github(cfg: DictConfig, o: dict, repo, name: str, head: str, cache: CommitCache | None,
            redactor: Redactor, stats: Stats) -> tuple[list[dict], dict]:
    g = o["github"]
    if not (g["api"] or g["export"]):
        return [], {}
    if g["export"]:
        bundles, info = github.load_export(g["export"], redactor), {"export": str(g["export"])}
    else:
        slug = g["repo"] or github_slug(cfg.data.repo)
        if not slug:
            raise HarnessError("data.mine.github.api=true but the repository's origin is not on "
                               "GitHub. Fix: set data.mine.github.repo=owner/name.")
        client = github.GitHubClient(
            g["api_url"], github.token_from_env(g["token_env"]),
            Path(cfg.cache_dir).expanduser() / "mine" / "github" / f"{slug.replace('/', '__')}.jsonl",
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
                  cutoff: str | None, o: dict, cache: CommitCache | None, workers: _Workers,
                  prefetched: dict[str, Future], queued: Callable[[], object]) -> tuple[list[dict], str]:
    """FIM and docstring records: the train tree at the last mainline commit before the cutoff,
    and the files test commits changed; (records, the train tree's commit). `queued()` runs
    while the workers read files."""
    fim_sha = _fim_commit(mainline, {s: r["committed_at"] for s, r in results.items()}, cutoff)
    train = sources.tree_blobs(open_repo(repo), fim_sha, o)
    read_train = _read_files(repo, [(p, b, None) for p, b in train], o, cache, workers, prefetched)
    # one held-out FIM file per path: the newest test commit's version, holes at its lines
    newest = {path: (r, path, blob, old)
              for r in sorted(records, key=lambda r: r["committed_at"])
              if r["split"] == "test" and r["kind"] == "commit"
              for path, blob, old in results[r["shas"][0]]["fim"] if sources.fim_ok(path, o)}
    test = list(newest.values())
    read_test = _read_files(repo, [(p, b, (r["shas"][0], old)) for r, p, b, old in test], o, cache,
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
    o = options(cfg)
    extra_files = extra.paths(cfg.data.get("extra"))
    extra_rows = extra.read(extra_files)  # checked before any work
    info = inspect(cfg.data.repo, cfg.data.rev, o["pull_refs"], o["allow_shallow"])
    repo = Path(cfg.data.repo).expanduser().resolve()
    o["vendored_paths"] = [*o["vendored_paths"], *classes.linguist_patterns(repo, info.head)]
    log.info("mining %s (%s) at %s", info.name, repo, info.head[:12])
    cache = (CommitCache(Path(cfg.cache_dir).expanduser() / "mine" / "commits.sqlite",
                         stable_hash({k: o[k] for k in KEYS})) if o["cache"] else None)
    redactor, stats, clock = Redactor(), Stats(), _Clock()
    with contextlib.closing(cache) if cache else contextlib.nullcontext(), _Workers(o) as workers:
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
        results, reused = _mine_commits(
            repo, shas, o, set(info.shallow_boundary), cache, workers,
            lambda done: prefetched.update(_prefetch(workers, repo, mainline, date_of, done, o, cache)))
        records, negatives = _commit_records(results, shas, pulls, branches, info.name, stats)
        records = _weigh_classes(records, o["change_classes"], stats)
        clock.lap("commits")

        gh_records, gh_info = _github(cfg, o, open_repo(repo), info.name, info.head, cache,
                                      redactor, stats)
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
        cutoff = _cutoff([r["committed_at"] for r in records if r["kind"] == "commit"], o)
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
    split = _split_report(records, cutoff, o)
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
        "github": gh_info or None, "split": split,
        "extra": {"files": [str(f) for f in extra_files], "chat_in": len(extra_chats), "fim_in": len(extra_fims),
                  "kept": dict(Counter(r["kind"] for r in records if r.get("origin") == "extra"))}
        if extra_files else None,
        "kept": {f"{k}/{s}": n for (k, s), n in sorted(count.items())},
    }
    write_jsonl(out / "records.jsonl", (encoded.get(r["id"]) or _public(r) for r in records))
    write_jsonl(out / "negatives.jsonl", (_public(r) for r in negatives))
    atomic_write_json(out / "mine_stats.json", summary)
    write_preview(records, int(o["preview"]), int(cfg.seed), out / "preview.md")
    clock.lap("write")
    log.info("mined %d records (%s) and %d negatives → %s; dropped %s; seconds: %s", len(records),
             summary["kept"], len(negatives), out, dict(stats.dropped), clock.laps)
    return summary


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def fingerprint_inputs(cfg: DictConfig) -> dict:
    """What makes a previous mine output stale besides data.mine: the commits mined, the
    fetched pull-request heads, and the export file's content."""
    o = options(cfg)
    info = inspect(cfg.data.repo, cfg.data.rev, o["pull_refs"], allow_shallow=True, announce=False)
    export = o["github"]["export"]
    return {"head": info.head, "repo": str(Path(cfg.data.repo).expanduser().resolve()),
            "extra": [sha256_file(p) for p in extra.paths(cfg.data.get("extra"))],
            "pulls": stable_hash(sorted(info.pull_heads.items())),
            "export": sha256_file(Path(export).expanduser()) if export and Path(export).expanduser().is_file() else export}
