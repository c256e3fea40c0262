"""Per-commit mining results, kept between runs so re-mining does only new work.

A commit's result depends only on its sha (which fixes its content), the settings that shape
per-commit work (`worker.KEYS`) and the miner's code, so results are stored in SQLite under
`<cache_dir>/mine/commits.sqlite`, keyed by (hash of settings and code, sha): editing the
miner can never serve results the new code would not produce. A run on a repository with a
few new commits mines only those; a crash loses only the batches that were in flight (every
finished batch is committed at once, by the worker process that mined it: SQLite in WAL mode
lets them write in turn). Stored text is already redacted: no secret is cached.

Rows are pickles, uncompressed: on bench/bench_mine.py's history, writing 1,000 results took
37-41 ms as JSON with zlib (level 1) and 5 ms as pickles, for 2.2x the bytes (2.6 MB per
1,000 commits); reading them back, 22 ms against 13 ms. A pickle runs code when loaded, so the
cache directory must be as private as the user's own files (it is under their cache_dir).
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the miner's source files, the redactor's included (it lives beside the package:
    the sandbox uses it too)."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for f in [*sorted(here.glob("*.py")), here.parent / "redact.py"]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class CommitCache:
    def __init__(self, path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.spec = (str(path), key)  # what a worker process needs to open its own connection
        self.key = f"{code_version()}:{key}"
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a cache: a crash may lose the last batch
        # rows are large (a commit's records): SQLite advises a rowid table with a separate
        # (key, sha) index over WITHOUT ROWID, which stores whole rows in the index b-tree
        self.db.execute("CREATE TABLE IF NOT EXISTS commit_results (key TEXT NOT NULL, "
                        "sha TEXT NOT NULL, data BLOB NOT NULL, UNIQUE (key, sha))")

    def get(self, shas: Iterable[str]) -> dict[str, dict]:
        """The stored results of `shas` (looked up through the (key, sha) index, 500 at a time:
        a scan of every row for a few would read the whole cache)."""
        wanted, out = list(dict.fromkeys(shas)), {}
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            rows = self.db.execute("SELECT sha, data FROM commit_results WHERE key = ? AND sha IN "
                                   f"({','.join('?' * len(part))})", (self.key, *part))
            out.update((sha, pickle.loads(data)) for sha, data in rows)
        return out

    def put(self, results: Iterable[dict]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO commit_results VALUES (?, ?, ?)",
                [(self.key, r["sha"], pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)) for r in results])

    def close(self) -> None:
        self.db.close()
