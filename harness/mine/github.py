"""Pull requests, their review comments and commits from the GitHub REST API, or an export.

We call the REST API with `requests` rather than PyGithub: we need the raw JSON (it is what the
cache and the offline export file hold, byte for byte the API's shape) and an exact count of
calls (PyGithub fetches lazily and re-fetches to complete objects, so "a rerun makes no repeat
calls" could not be guaranteed).

- Pagination follows the `Link: <…>; rel="next"` header (`requests` parses it).
- Rate limits: a 403/429 with `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset` when
  that is within `max_wait_s`, else stops with the reset time; `retry-after` (secondary limits)
  and 5xx are retried with backoff. Every page is appended to a JSONL cache as it arrives, so
  a stopped run resumes without repeating a call.
- The cache keys list pages by URL and the mined HEAD (new commits → the list is re-read);
  per-PR pages by URL alone (a merged PR's comments and commits do not change).
- Text fields are redacted before they are cached: no secret is written to disk.

An export file holds the same JSON, one pull request per line:
`{"pull": <GET pulls item>, "comments": [<GET pulls/{n}/comments items>],
"commits": [<GET pulls/{n}/commits items>]}`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.errors import HarnessError
from harness.redact import Redactor

log = logging.getLogger(__name__)
_SCRUB = ("title", "body", "diff_hunk", "message")


def _scrub(obj: Any, redactor: Redactor) -> Any:
    if isinstance(obj, dict):
        return {k: (redactor.redact(v)[0] if k in _SCRUB and isinstance(v, str) else _scrub(v, redactor))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, redactor) for v in obj]
    return obj


class GitHubClient:
    """GET with pagination, rate-limit handling and a JSONL response cache."""

    def __init__(self, api_url: str, token: str | None, cache_path: Path, max_wait_s: float,
                 timeout_s: float, redactor: Redactor, sleep: Callable[[float], None] = time.sleep):
        import requests

        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/vnd.github+json",
                                     "X-GitHub-Api-Version": "2022-11-28",
                                     "User-Agent": "harness-miner"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.cache_path, self.max_wait_s, self.timeout_s = cache_path, max_wait_s, timeout_s
        self.redactor, self.sleep = redactor, sleep
        self.calls = 0
        self.cache: dict[str, dict] = {}
        if cache_path.exists():
            for line in cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                self.cache[entry["key"]] = entry

    def _request(self, url: str):
        import requests

        for attempt in range(6):
            try:
                resp = self.session.get(url, timeout=self.timeout_s)
            except requests.RequestException as e:
                raise HarnessError(
                    f"could not reach the GitHub API at {self.api_url}: {e}. Fix: check the network "
                    "or mine offline with data.mine.github.export=<file>.") from e
            self.calls += 1
            if resp.status_code == 200:
                return resp
            wait = self._wait_for(resp, attempt)
            if wait is None:
                break
            log.warning("GitHub API %s on %s: waiting %.0f s before retrying", resp.status_code, url, wait)
            self.sleep(wait)
        raise self._error(resp)

    def _wait_for(self, resp, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when retrying cannot help."""
        h = resp.headers
        if resp.status_code in (403, 429) and h.get("x-ratelimit-remaining") == "0":
            wait = max(0.0, float(h.get("x-ratelimit-reset", 0)) - time.time()) + 1
            return wait if wait <= self.max_wait_s else None
        if resp.status_code in (403, 429) and h.get("retry-after"):
            wait = float(h["retry-after"])
            return wait if wait <= self.max_wait_s else None
        if resp.status_code >= 500 and attempt < 4:
            return min(60.0, 2.0 ** attempt)
        return None

    def _error(self, resp) -> HarnessError:
        h, cached = resp.headers, f"{len(self.cache)} responses are cached in {self.cache_path}"
        if resp.status_code == 401:
            return HarnessError(
                "the GitHub API rejected the token (401 Bad credentials). Fix: set a valid token "
                "in the environment variable named by data.mine.github.token_env, or unset it "
                "for public repositories (60 requests/hour).")
        if resp.status_code in (403, 429) and (h.get("x-ratelimit-remaining") == "0" or h.get("retry-after")):
            reset = h.get("x-ratelimit-reset")
            until = (datetime.fromtimestamp(int(reset), tz=timezone.utc).isoformat()
                     if reset else f"{h.get('retry-after')} s from now")
            return HarnessError(
                f"the GitHub API rate limit is exhausted until {until}, longer than "
                f"data.mine.github.max_wait_s={self.max_wait_s:g}; {cached} and will not be "
                "fetched again. Fix: rerun after the reset, use a token (5000 requests/hour), or "
                "raise data.mine.github.max_wait_s.")
        if resp.status_code == 404:
            return HarnessError(
                f"GitHub API 404 for {resp.url}: the repository does not exist or the token "
                "cannot read it. Fix: set data.mine.github.repo=owner/name and a token with "
                "read access to pull requests.")
        return HarnessError(f"GitHub API error {resp.status_code} for {resp.url}: "
                            f"{resp.text[:200]}. {cached}.")

    def pages(self, path: str, params: str, scope: str = "") -> Iterator[list]:
        """Each page of a list endpoint, from the cache when it holds it."""
        url: str | None = f"{self.api_url}{path}?{params}"
        while url:
            key = f"{url}#{scope}" if scope else url
            entry = self.cache.get(key)
            if entry is None:
                resp = self._request(url)
                entry = {"key": key, "body": _scrub(resp.json(), self.redactor),
                         "next": resp.links.get("next", {}).get("url")}
                self.cache[key] = entry
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
            yield entry["body"]
            url = entry["next"]

    def all(self, path: str, params: str, scope: str = "") -> list:
        return [item for page in self.pages(path, params, scope) for item in page]


def fetch_bundles(client: GitHubClient, slug: str, head: str, max_prs: int) -> list[dict]:
    """The newest `max_prs` merged pull requests with their review comments and commits."""
    pulls = []
    for page in client.pages(f"/repos/{slug}/pulls", "state=closed&sort=created&direction=desc"
                             "&per_page=100", scope=head):
        pulls += [p for p in page if p.get("merged_at")]
        if len(pulls) >= max_prs:
            break
    bundles = []
    for p in tqdm(pulls[:max_prs], desc="GitHub pull requests", unit="PR"):
        n = p["number"]
        bundles.append({"pull": p,
                        "comments": client.all(f"/repos/{slug}/pulls/{n}/comments", "per_page=100"),
                        "commits": client.all(f"/repos/{slug}/pulls/{n}/commits", "per_page=100")})
    log.info("GitHub: %d merged pull requests (%d API calls, cache %s)", len(bundles),
             client.calls, client.cache_path)
    return bundles


def load_export(path: str | Path, redactor: Redactor) -> list[dict]:
    """Bundles from an export file (JSON Lines, or one JSON list of the same objects)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HarnessError(f"data.mine.github.export={path}: no such file. Fix: point it at a "
                           "JSON Lines export of pull requests (see harness/mine/github.py).")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise HarnessError(f"{p} is not valid JSON/JSON Lines ({e}). Fix: export one "
                           '{"pull": …, "comments": […], "commits": […]} object per line.') from e
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or "pull" not in r]
    if bad:
        raise HarnessError(f"{p}: entry {bad[0] + 1} has no \"pull\" object. Fix: export one "
                           '{"pull": …, "comments": […], "commits": […]} object per line.')
    return [_scrub({"pull": r["pull"], "comments": r.get("comments", []),
                    "commits": r.get("commits", [])}, redactor) for r in rows]


def token_from_env(name: str) -> str | None:
    return os.environ.get(name) or None
