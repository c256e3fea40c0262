"""`data.extra`: the user's own examples (JSON Lines), merged with the mined pairs through the
same redaction, dedup, decontamination and split, and counted apart (`kind: extra` for chat
pairs, `origin: extra` on FIM sources).

One JSON object a line, either
- `{"messages": [{"role": "system", ...}?, {"role": "user", "content": ...},
  {"role": "assistant", "content": ...}]}`: one request and its reply (the system turn, if
  any, is dropped: the format stage adds the configured one), or
- `{"text": "...", "path": "pkg/mod.py"?}`: source code for fill-in-the-middle examples;
plus an optional `"date"` (ISO 8601): examples dated at or after the cutoff are held out like
the repository's own; undated ones are train.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import HarnessError
from harness.mine import dedup
from harness.mine.records import record_id
from harness.redact import Redactor

_FIX = ("Fix: one JSON object a line, {\"messages\": [{\"role\": \"user\", ...}, {\"role\": \"assistant\", ...}]} "
        "or {\"text\": \"...\"} (see harness/mine/extra.py).")


def paths(value) -> list[Path]:
    """`data.extra` as a list of existing files (a path, a list of paths, or null)."""
    if not value:
        return []
    out = [Path(p).expanduser() for p in ([value] if isinstance(value, str) else list(value))]
    for p in out:
        if not p.is_file():
            raise HarnessError(f"data.extra: {p} is not a file. Fix: point data.extra at JSON Lines files "
                               "of your own examples, or set it to null.")
    return out


def _date(value, where: str) -> str:
    if value is None:
        return ""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as e:
        raise HarnessError(f"{where}: date {value!r} is not ISO 8601. {_FIX}") from e
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def _chat(row: dict, where: str) -> tuple[str, str]:
    turns = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "system"]
    if [m.get("role") for m in turns] != ["user", "assistant"] or not all(
            isinstance(m.get("content"), str) and m["content"].strip() for m in turns):
        raise HarnessError(f"{where}: expected one user turn then one assistant turn, each with text "
                           f"content. {_FIX}")
    return turns[0]["content"], turns[1]["content"]


def read(files: list[Path]) -> list[tuple[str, int, dict]]:
    """Every example of the user's files as (file, line, row), checked: a bad line stops the
    run before any mining, named with its file and line number."""
    rows = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"data.extra {f}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HarnessError(f"{where}: not JSON ({e.msg}). {_FIX}") from e
            if not isinstance(row, dict) or not ({"messages", "text"} & row.keys()):
                raise HarnessError(f"{where}: neither `messages` nor `text`. {_FIX}")
            row["date"] = _date(row.get("date"), where)
            if "messages" in row:
                row["messages"] = _chat(row, where)
            rows.append((f.name, n, row))
    return rows


def load(rows: list[tuple[str, int, dict]], o: dict, redactor: Redactor, bench) -> tuple[list[dict], list[dict]]:
    """(chat records, FIM source records) of the rows `read` returned, redacted and signed."""
    chats, fims = [], []
    for name, n, row in rows:
        date = row["date"]
        base = {"repo": f"extra:{name}", "origin": "extra", "shas": [f"{name}:{n}"],
                "committed_at": date, "authored_at": date}
        if "messages" in row:
            request, reply = row["messages"]
            request, k1 = redactor.redact(request, "extra.txt")
            reply, k2 = redactor.redact(reply, "extra.txt")
            chats.append({**base, "id": record_id("extra", name, str(n), request), "kind": "extra",
                          "source": "extra", "pr": None, "author_id": "", "instruction": request,
                          "response": reply, "files": [], "added": 0, "deleted": 0,
                          "redactions": sorted(set(k1 + k2))})
        if isinstance(row.get("text"), str) and row["text"].strip():
            path = str(row.get("path") or f"extra/{Path(name).stem}_{n}.py")
            text, kinds = redactor.redact(row["text"], path)
            fims.append({**base, "id": record_id("fim", name, str(n)), "kind": "fim_source",
                         "path": path, "content": text, "redactions": sorted(set(kinds))})
    d = o["dedup"]
    if not chats and not fims:
        return [], []
    if chats:
        for r, fp in zip(chats, dedup.fingerprints([(r["instruction"], r["response"]) for r in chats],
                                                   d["ngram"], d["num_perm"], bench), strict=True):
            r.update(fp)
    if fims:
        for r, dirty in zip(fims, dedup.contamination([r["content"] for r in fims], d["ngram"], bench),
                            strict=True):
            r["_contaminated"] = dirty
    return chats, fims
