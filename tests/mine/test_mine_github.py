"""Pull requests and review comments from a loopback server speaking the GitHub REST shapes:
Link-header pagination, a 403 rate limit with x-ratelimit-reset, a JSONL cache, bad tokens."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import RepoBuilder, distinct_function, git, make_cfg

from harness.errors import HarnessError
from harness.io import read_jsonl
from harness.mine.stage import run
from harness.stages import run_stage

TOKEN = "gh-test-token"


class FakeGitHub(ThreadingHTTPServer):
    """Serves `routes` (path → list of items), one item per page, with `Link: rel="next"`.
    `rate_limited[path]` answers that many requests to `path` with a 403 rate-limit first."""

    def __init__(self, routes: dict[str, list], rate_limited: dict[str, int] | None = None,
                 reset_in: float = 0.0) -> None:
        self.routes, self.rate_limited, self.reset_in = routes, dict(rate_limited or {}), reset_in
        self.hits: Counter = Counter()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGitHub

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        u = urlparse(self.path)
        srv = self.server
        srv.hits[u.path] += 1
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Bad credentials"})
        if srv.rate_limited.get(u.path, 0) > 0:
            srv.rate_limited[u.path] -= 1
            return self._send(403, {"message": "API rate limit exceeded"}, {
                "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time() + srv.reset_in))})
        if u.path not in srv.routes:
            return self._send(404, {"message": "Not Found"})
        items, page = srv.routes[u.path], int(parse_qs(u.query).get("page", ["1"])[0])
        headers = {}
        if page < len(items):
            query = {k: v[0] for k, v in parse_qs(u.query).items()} | {"page": str(page + 1)}
            nxt = f"{srv.url}{u.path}?" + "&".join(f"{k}={v}" for k, v in query.items())
            headers["Link"] = f'<{nxt}>; rel="next", <{srv.url}{u.path}?page={len(items)}>; rel="last"'
        self._send(200, items[page - 1:page], headers)


def review_history(tmp_path):
    """Main with a few commits; PR #5 on a branch: a commit, a reviewer's comments on it, a
    later commit fixing the commented line, squash-merged into main; PR #4 closed unmerged."""
    b = RepoBuilder(tmp_path / "calc")
    b.commit("Create the calculator package", {"calc/core.py": distinct_function("core_init", 24)}, day=1)
    for i in range(3):
        b.commit(f"Add operation {i} for the ledger", {f"calc/op{i}.py": distinct_function(f"op_{i}", 22)}, day=2 + i)
    b.checkout("-b", "discounts")
    body = "".join(f"    step_{i} = total * {i + 2}\n" for i in range(20))
    code = f"\n\ndef apply_discount(total):\n    rate = 0.1\n{body}    return total * (1 - rate)\n"
    first = b.commit("Add discounts", {"calc/discount.py": code}, day=6)
    fixed = code.replace("    return total * (1 - rate)", "    return round(total * (1 - rate), 2)")
    fix = b.commit("Round discounted totals", {"calc/discount.py": fixed}, day=8, append=False)
    b.checkout("main")
    git(b.path, "merge", "-q", "--squash", "discounts")
    squash = b.commit("Add discounts (#5)\n\nDiscounts for loyal customers.", day=9)
    git(b.path, "update-ref", "refs/pull/5/head", fix)
    lines = (b.path / "calc" / "discount.py").read_text().split("\n")
    return_line = next(i for i, line in enumerate(lines, 1) if "return round" in line)
    rate_line = next(i for i, line in enumerate(lines, 1) if "rate = 0.1" in line)
    day = lambda d: f"2024-01-{d + 1:02d}T12:00:00Z"  # noqa: E731
    pulls = [
        {"number": 5, "title": "Add discounts", "body": "Discounts for loyal customers.\n\nCloses #2.",
         "merged_at": day(9), "merge_commit_sha": squash, "commits": 2, "user": {"login": "ann"}},
        {"number": 4, "title": "Try a new parser", "body": "", "merged_at": None,
         "merge_commit_sha": None, "commits": 1, "user": {"login": "bob"}},
    ]
    comments = [
        {"id": 11, "path": "calc/discount.py", "original_line": return_line, "original_commit_id": first,
         "created_at": day(7), "in_reply_to_id": None, "user": {"login": "rev"},
         "diff_hunk": "@@ -0,0 +1,3 @@", "body": "Round the total to cents: floats drift."},
        {"id": 12, "path": "calc/discount.py", "original_line": rate_line, "original_commit_id": first,
         "created_at": day(7), "in_reply_to_id": None, "user": {"login": "rev"}, "diff_hunk": "@@",
         "body": "Name the constant.\n```suggestion\n    rate = DISCOUNT_RATE\n```"},
        {"id": 13, "path": "calc/discount.py", "original_line": return_line, "original_commit_id": first,
         "created_at": day(7), "in_reply_to_id": 11, "user": {"login": "ann"}, "diff_hunk": "@@",
         "body": "Good point."},
    ]
    commits = [{"sha": first, "commit": {"committer": {"date": day(6)}, "message": "Add discounts"}},
               {"sha": fix, "commit": {"committer": {"date": day(8)}, "message": "Round discounted totals"}}]
    routes = {"/repos/team/calc/pulls": pulls, "/repos/team/calc/pulls/5/comments": comments,
              "/repos/team/calc/pulls/5/commits": commits}
    return b, routes, {"first": first, "fix": fix, "squash": squash}


def api_cfg(tmp_path, repo, server, *extra):
    return make_cfg(tmp_path / "run", repo, [
        "data.mine.github.api=true", "data.mine.github.repo=team/calc",
        f"data.mine.github.api_url={server.url}", "data.mine.github.token_env=TEST_GH_TOKEN",
        "data.mine.test_fraction=0.2", *extra], tmp_path / "cache")


@pytest.fixture
def history(tmp_path):
    return review_history(tmp_path)


def test_review_comments_become_corrections_and_a_rerun_makes_no_calls(tmp_path, history, monkeypatch):
    b, routes, shas = history
    monkeypatch.setenv("TEST_GH_TOKEN", TOKEN)
    server = FakeGitHub(routes, rate_limited={"/repos/team/calc/pulls/5/comments": 1})
    out = tmp_path / "out"
    out.mkdir()
    stats = run(api_cfg(tmp_path, b.path, server), out)
    # two pages of pulls (Link: rel="next"), three of comments after one 403, two of commits
    assert server.hits == {"/repos/team/calc/pulls": 2, "/repos/team/calc/pulls/5/comments": 4,
                           "/repos/team/calc/pulls/5/commits": 2}
    assert stats["github"]["pull_requests"] == 1 and stats["github"]["api_calls"] == 8
    records = list(read_jsonl(out / "records.jsonl"))
    [pr] = [r for r in records if r["kind"] == "pr"]
    assert pr["source"] == "github" and pr["pr"] == 5 and pr["shas"] == [shas["squash"]]
    assert pr["instruction"].startswith("Add discounts\n\nDiscounts for loyal customers.")
    assert stats["sources"]["pr"]["dropped"] == {"superseded_by_api": 1}  # the git-only squash record
    # refs/pull/5/head's pre-squash commit: its change is the PR's, not trained twice (the
    # one-line fix commit is too small to get that far)
    assert stats["sources"]["commit"]["dropped"]["pr_branch_commit"] == 1

    fixes = {r["source"]: r for r in records if r["kind"] == "review_fix"}
    comment = fixes["github:comment"]
    assert comment["instruction"].startswith("Round the total to cents: floats drift.")
    assert "    return total * (1 - rate)" in comment["instruction"]
    assert "    return round(total * (1 - rate), 2)" in comment["response"]
    assert comment["shas"] == [shas["fix"]] and comment["pr"] == 5  # paired with the later commit
    suggestion = fixes["github:suggestion"]
    assert "    rate = 0.1" in suggestion["instruction"] and "```" not in suggestion["instruction"]
    assert "    rate = DISCOUNT_RATE" in suggestion["response"] and "rate = 0.1" not in suggestion["response"]
    assert stats["sources"]["review_fix"]["dropped"] == {"review_reply_or_file_comment": 1}

    server.hits.clear()
    out2 = tmp_path / "out2"
    out2.mkdir()
    assert run(api_cfg(tmp_path, b.path, server), out2)["kept"] == stats["kept"]
    assert server.hits == {}  # everything came from the JSONL cache


def test_an_export_file_gives_the_same_records_offline(tmp_path, history, monkeypatch):
    b, routes, _ = history
    monkeypatch.setenv("TEST_GH_TOKEN", TOKEN)
    api_out, export_out = tmp_path / "api", tmp_path / "export"
    api_out.mkdir()
    export_out.mkdir()
    run(api_cfg(tmp_path, b.path, FakeGitHub(routes)), api_out)
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps({"pull": routes["/repos/team/calc/pulls"][0],
                                  "comments": routes["/repos/team/calc/pulls/5/comments"],
                                  "commits": routes["/repos/team/calc/pulls/5/commits"]}) + "\n")
    run(make_cfg(tmp_path / "run2", b.path, [f"data.mine.github.export={export}",
                                             "data.mine.test_fraction=0.2"], tmp_path / "cache2"), export_out)
    assert (api_out / "records.jsonl").read_text() == (export_out / "records.jsonl").read_text()


def test_a_wrong_token_stops_with_the_fix_and_no_outputs(tmp_path, history, monkeypatch):
    b, routes, _ = history
    monkeypatch.setenv("TEST_GH_TOKEN", "expired")
    with pytest.raises(HarnessError, match=r"rejected the token .401 Bad credentials.*token_env"):
        run_stage(api_cfg(tmp_path, b.path, FakeGitHub(routes)), "mine")
    assert not (tmp_path / "run" / "mine").exists()
    assert not list((tmp_path / "run").rglob("records.jsonl"))


def test_a_long_rate_limit_stops_with_the_reset_time_and_resumes_from_the_cache(tmp_path, history, monkeypatch):
    b, routes, _ = history
    monkeypatch.setenv("TEST_GH_TOKEN", TOKEN)
    server = FakeGitHub(routes, rate_limited={"/repos/team/calc/pulls/5/commits": 1}, reset_in=3600)
    with pytest.raises(HarnessError, match=r"rate limit is exhausted until .*responses are cached"):
        run_stage(api_cfg(tmp_path, b.path, server, "data.mine.github.max_wait_s=60"), "mine")
    assert not (tmp_path / "run" / "mine").exists()
    done = sum(server.hits.values())
    run_stage(api_cfg(tmp_path, b.path, server, "data.mine.github.max_wait_s=60"), "mine")
    # the rerun asks only for what it did not have: the commits pages
    assert sum(server.hits.values()) - done == 2
    assert (tmp_path / "run" / "mine" / "records.jsonl").exists()


def test_a_repository_not_on_github_needs_the_repo_named(tmp_path, history):
    b, _, _ = history
    cfg = make_cfg(tmp_path / "run", b.path, ["data.mine.github.api=true"], tmp_path / "cache")
    with pytest.raises(HarnessError, match=r"set data\.mine\.github\.repo=owner/name"):
        run_stage(cfg, "mine")


def test_a_broken_export_file_is_refused(tmp_path, history):
    b, _, _ = history
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"number": 1}\n')
    cfg = make_cfg(tmp_path / "run", b.path, [f"data.mine.github.export={bad}"], tmp_path / "cache")
    with pytest.raises(HarnessError, match='entry 1 has no "pull" object'):
        run_stage(cfg, "mine")
