"""Records from GitHub pull requests: PR description → change, and review comment → fix.

A review comment (path, original_commit_id, original_line, created_at, body) is paired with the
first later commit of the pull request that changes the commented lines: instruction = the
reviewer's comment + the code before, response = the corrected code. A comment holding a
```` ```suggestion ```` block needs no later commit: the suggestion is the corrected code.
Line tracking compares the file at the commented commit with the file at each later commit
(difflib opcodes), so edits elsewhere in the file do not move the lines we look at.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from datetime import datetime, timezone

from git import Repo

from harness.mine import dedup
from harness.mine.diffs import modified_files
from harness.mine.filters import content_reason, path_skipped, size_reason
from harness.mine.records import FileDiff, author_id, build, clean_message, record_id
from harness.redact import Redactor

_SUGGESTION = re.compile(r"```suggestion[^\n]*\n(.*?)```", re.DOTALL)


def _utc(ts: str | None) -> str | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc).isoformat()


def _has(repo: Repo, sha: str | None) -> bool:
    """Whether commit `sha` is in the repository (PR commits are there only when fetched)."""
    if not sha or not re.fullmatch(r"[0-9a-f]{40}", sha):
        return False
    try:
        return repo.odb.info(bytes.fromhex(sha)).type == b"commit"
    except ValueError:  # cat-file: missing
        return False


def _file_at(repo: Repo, sha: str, path: str, max_bytes: int) -> list[str] | None:
    try:
        blob = repo.commit(sha).tree / path
    except KeyError:
        return None
    if blob.size > max_bytes:
        return None
    try:
        return blob.data_stream.read().decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None


def _region(lines: list[str], lo: int, hi: int, path: str) -> str:
    return f"--- {path} (lines {lo + 1}-{hi})\n" + "".join(line + "\n" for line in lines[lo:hi])


def _changed_span(old: list[str], new: list[str], lo: int, hi: int) -> tuple[int, int] | None:
    """Where old[lo:hi] went in `new`, if any line of it changed; else None."""
    sm = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    touched, n_lo, n_hi = False, None, None
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if i2 < lo or i1 > hi or (i1 == i2 == lo and tag == "equal"):
            continue
        if tag != "equal" and ((i1 < hi and i2 > lo) or (i1 == i2 and lo < i1 < hi)):
            touched = True
        start = j1 + max(0, lo - i1) if tag == "equal" else j1
        end = j1 + (min(hi, i2) - i1) if tag == "equal" else j2
        n_lo = start if n_lo is None else min(n_lo, start)
        n_hi = end if n_hi is None else max(n_hi, end)
    return (n_lo, n_hi) if touched and n_lo is not None else None


def _suggested(cm: dict, old: list[str] | None, lo: int, hi: int, suggestion: str):
    """(old lines, new lines, new span, lo, hi) with the suggestion applied to old[lo:hi]; when
    the commented commit was not fetched, the commented lines are the end of the diff hunk."""
    if old is None:
        old = [h[1:] for h in (cm.get("diff_hunk") or "").split("\n")[1:] if h[:1] != "-"]
        lo, hi = max(0, len(old) - (hi - lo)), len(old)
    lines = suggestion.rstrip("\n").split("\n")
    return old, old[:lo] + lines + old[hi:], (lo, lo + len(lines)), lo, hi


def _addressed(repo: Repo, commits: list[tuple[str, str]], cm: dict, old: list[str], lo: int,
               hi: int, max_bytes: int):
    """(commit, date, new lines, new span) of the first PR commit after the comment that
    changes old[lo:hi], or None."""
    created = _utc(cm["created_at"])
    for sha, date in commits:
        if not date or date <= created or not _has(repo, sha):
            continue
        new = _file_at(repo, sha, cm["path"], max_bytes)
        if new is not None and (span := _changed_span(old, new, lo, hi)):
            return sha, date, new, span
    return None


def _review_records(bundle: dict, repo: Repo, name: str, o: dict, drops: Counter,
                    redactor: Redactor, bench: dedup.Benchmarks | None) -> list[dict]:
    pull, out = bundle["pull"], []
    commits = sorted(((c["sha"], _utc(c["commit"]["committer"]["date"])) for c in bundle["commits"]),
                     key=lambda x: x[1] or "")
    ctx = o["review"]["context_lines"]
    for cm in bundle["comments"]:
        drops["in"] += 1
        if cm.get("in_reply_to_id") or not cm.get("path") or not cm.get("original_line"):
            drops["review_reply_or_file_comment"] += 1
            continue
        path, body = cm["path"], cm.get("body") or ""
        hi = int(cm["original_line"])
        lo = int(cm.get("original_start_line") or hi) - 1
        old = (_file_at(repo, cm["original_commit_id"], path, o["max_file_bytes"])
               if _has(repo, cm.get("original_commit_id")) else None)
        if sugg := _SUGGESTION.search(body):
            old, new, span, lo, hi = _suggested(cm, old, lo, hi, sugg.group(1))
            sha, date = cm["original_commit_id"], _utc(cm["created_at"])
        elif old is None:
            drops["review_commit_missing"] += 1
            continue
        elif found := _addressed(repo, commits, cm, old, lo, hi, o["max_file_bytes"]):
            sha, date, new, span = found
        else:
            drops["review_not_addressed"] += 1
            continue
        b_lo, b_hi = max(0, lo - ctx), min(len(old), hi + ctx)
        a_lo, a_hi = max(0, span[0] - ctx), min(len(new), span[1] + ctx)
        if old[b_lo:b_hi] == new[a_lo:a_hi]:
            drops["review_no_change"] += 1
            continue
        comment = _SUGGESTION.sub("", body).strip() or "Apply this suggestion."
        before, k1 = redactor.redact(_region(old, b_lo, b_hi, path), path)
        after, k2 = redactor.redact(_region(new, a_lo, a_hi, path), path)
        rec = _record("review_fix", "github:suggestion" if sugg else "github:comment", pull,
                      sha, date, "github:" + (cm.get("user") or {}).get("login", ""),
                      f"{comment}\n\nThe code before the change:\n{before}", after, [path],
                      name, o, bench, extra=str(cm.get("id")))
        rec["redactions"] = sorted(set(k1 + k2))
        out.append(rec)
    return out


def _record(kind: str, source: str, pull: dict, sha: str, date: str, who: str, instruction: str,
            response: str, files: list[str], name: str, o: dict, bench: dedup.Benchmarks | None,
            extra: str = "", added: int = 0, deleted: int = 0) -> dict:
    rec = {"id": record_id(kind, source, str(pull["number"]), sha or "", extra), "kind": kind,
            "source": source, "pr": pull["number"], "repo": name, "shas": [sha] if sha else [],
            "authored_at": date, "committed_at": date, "author_id": author_id(who),
            "instruction": instruction, "response": response, "files": files,
            "added": added or response.count("\n"), "deleted": deleted, "redactions": [],
            **dedup.fingerprint(instruction, response, o["dedup"]["ngram"], o["dedup"]["num_perm"], bench)}
    return rec


def _pr_base(repo: Repo, pull: dict) -> tuple[str, str | None] | None:
    """(merge commit, base to diff against) of a merged PR, when its commit is here."""
    sha = pull.get("merge_commit_sha")
    if not _has(repo, sha):
        return None
    commit = repo.commit(sha)
    if len(commit.parents) > 1:
        return sha, commit.parents[0].hexsha
    n = int(pull.get("commits") or 1)
    if n > 1 and not commit.summary.rstrip().endswith(f"(#{pull['number']})"):  # a rebase merge
        base = commit
        for _ in range(n):
            if len(base.parents) != 1:
                return None
            base = base.parents[0]
        return sha, base.hexsha
    return sha, None


def _pr_record(bundle: dict, repo: Repo, name: str, o: dict, drops: Counter,
               redactor: Redactor, bench: dedup.Benchmarks | None) -> dict | None:
    pull = bundle["pull"]
    drops["in"] += 1
    base = _pr_base(repo, pull)
    if base is None:
        drops["pr_commit_missing"] += 1
        return None
    sha, parent = base
    files, found = [], []

    def redact(text: str, path: str) -> str:
        text, kinds = redactor.redact(text, path)
        found.extend(kinds)
        return text

    for mf in modified_files(repo, [(sha, parent)])[0]:
        path = mf.new_path or mf.old_path
        raw = mf._c_diff.diff or b""
        blob = mf._c_diff.b_blob or mf._c_diff.a_blob
        if (path_skipped(path, o["skip_paths"]) or not raw or raw.startswith(b"Binary files")
                or (blob is not None and blob.size > o["max_file_bytes"])
                or content_reason(raw, o["max_line_chars"])):
            continue
        files.append(FileDiff(mf.old_path, mf.new_path, redact(mf.diff, path), mf.added_lines, mf.deleted_lines,
                              before=lambda mf=mf: mf.source_code_before))
    if not files:
        drops["no_text_changes"] += 1
        return None
    changed = sum(f.added + f.deleted for f in files)
    if reason := size_reason(changed, len(files), o["min_changed_lines"], o["pr"]["max_changed_lines"],
                             o["max_files"]):
        drops[reason] += 1
        return None
    message = (pull.get("title") or "") + "\n\n" + (pull.get("body") or "")
    request, context, response = build("pr", "github", clean_message(message), None, files,
                                       int(o["fit_tokens"] * o["chars_per_token"]),
                                       o["context_lines"], redact)
    instruction = request + context
    rec = _record("pr", "github", pull, sha, _utc(pull["merged_at"]),
                  "github:" + (pull.get("user") or {}).get("login", ""), instruction, response,
                  [f.path for f in files], name, o, bench, added=sum(f.added for f in files),
                  deleted=sum(f.deleted for f in files))
    rec["redactions"] = sorted(set(found))
    return rec


def github_records(bundles: list[dict], repo: Repo, name: str, o: dict, redactor: Redactor,
                   bench: dedup.Benchmarks | None) -> tuple[list[dict], dict[str, Counter]]:
    """PR and review_fix records of every merged pull request; drop counts per source."""
    drops = {"pr": Counter(), "review_fix": Counter()}
    out = []
    for b in bundles:
        if not b["pull"].get("merged_at"):
            continue
        if rec := _pr_record(b, repo, name, o, drops["pr"], redactor, bench):
            out.append(rec)
        out += _review_records(b, repo, name, o, drops["review_fix"], redactor, bench)
    return out, drops
