"""How the mine stage's work is scheduled over worker processes: the commit batches (newest
first, cached per commit), and whole files read for FIM and docstring sources, with the train
tree at a guessed cutoff prefetched while the last commit batches finish.

Every job's result is the same whichever worker runs it and whenever: scheduling decides only
when work is done, never what it produces.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from harness.io import stable_hash
from harness.mine import sources, split, worker
from harness.mine.cache import CommitCache
from harness.mine.diffs import open_repo
from harness.mine.worker import blob_chunk, mine_chunk

log = logging.getLogger(__name__)


class Workers:
    """The worker processes of one run, forked once (after `worker.prepare`) and shared by its
    phases, so that no phase pays for a second start; none when one process is asked for."""

    def __init__(self, o: dict) -> None:
        self.n, self.pool, self.frozen = _count(o), None, False

    def freeze(self) -> None:
        """Exempt what exists now from garbage collection until the run ends: forked workers
        then keep sharing its memory pages with this process instead of copying them."""
        gc.freeze()
        self.frozen = True

    def __enter__(self) -> Workers:
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


def _count(o: dict) -> int:
    return int(o["workers"]) or os.cpu_count() or 1


def even_batches(items: list, size: int, workers: int) -> list[list]:
    """Batches of at most `size` items, evenly sized and a multiple of `workers` in number, so
    that no worker idles while another finishes a last batch. Few large batches: every batch
    starts its own git processes, which cost ~10 ms each in pack and delta-cache set-up."""
    if not items:
        return []
    n = min(len(items), math.ceil(math.ceil(len(items) / max(1, size)) / workers) * workers)
    return [items[i * len(items) // n:(i + 1) * len(items) // n] for i in range(n)]


def mine_commits(repo: Path, shas: list[str], o: dict, boundary: set[str], cache: CommitCache | None,
                 workers: Workers, last_round: Callable[[dict], object]) -> tuple[dict[str, dict], int]:
    """Every commit's result, from the cache or mined now in parallel; (results, reused).
    Batches are mined newest first; `last_round(results so far)` runs when only the last round
    of batches is left, if there is more than one round."""
    results = cache.get(shas) if cache else {}
    reused = len(results)
    todo = [s for s in shas if s not in results]
    batches = even_batches(todo, int(o["chunk_size"]), workers.n)[::-1]
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


def _blob_key(path: str, blob: str, change: tuple[str, str | None] | None) -> str:
    return f"blob:{blob}:{Path(path).suffix}:{stable_hash(change)[:12]}"


def _deal(items: list, n: int) -> list[list]:
    """`items` dealt out over `n` batches like cards: whole files are few but heavy (parse,
    redact, sign), so large and small ones are shared evenly."""
    n = min(len(items), n)
    return [items[i::n] for i in range(n)]


def _guess_cutoff(done: dict[str, dict], date_of: dict[str, str], o: dict) -> str | None:
    """The cutoff `split.cutoff` will find, guessed from the results of the newest commits (`done`):
    their kept commit records, and the share kept extrapolated to all commits (`date_of`)."""
    if o.get("test_cutoff"):
        return split.cutoff([], o)
    # the time span of the kept records is close to the whole history's; the newest batches
    # tell whether records reach the newest commits
    kept = [r["committed_at"] for r in done.values() if r["kind"] == "commit" and not r["drop"] and r["records"]]
    dates = sorted(date_of.values())
    return split.cutoff([d for d in dates if d <= max(kept)] if kept else dates, o)


def prefetch(workers: Workers, repo: Path, mainline: list[str], date_of: dict[str, str],
             done: dict[str, dict], o: dict, cache: CommitCache | None) -> dict[str, Future]:
    """{blob key: future} reading the train FIM tree at the cutoff the newest commits' results
    (`done`) suggest, queued behind the commit batches so that they keep the workers busy while
    the last batches finish. The real cutoff (from all kept commits) is known only once every
    commit is mined; the tree then is mostly the same files, and only those that differ are
    read at that point."""
    if workers.pool is None:  # one process: nothing runs ahead
        return {}
    fim_sha = split.fim_commit(mainline, date_of, _guess_cutoff(done, date_of, o))
    items = [(_blob_key(p, b, None), p, b, None) for p, b in sources.tree_blobs(open_repo(repo), fim_sha, o)]
    hits = cache.get([k for k, *_ in items]) if cache else {}
    # small batches: whichever worker finishes its last commit batch first takes the next
    batches = _deal([i for i in items if i[0] not in hits], 4 * workers.n)
    fn = functools.partial(blob_chunk, cache=cache.spec if cache else None)
    return {key: job for job, batch in zip(workers.submit(fn, repo, batches, o), batches, strict=True)
            for key, *_ in batch}


def read_files(repo: Path, items: list[tuple[str, str, tuple[str, str | None] | None]], o: dict,
               cache: CommitCache | None, workers: Workers,
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
