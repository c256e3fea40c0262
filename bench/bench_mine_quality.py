"""What a mine run's pairs hold, checked against git itself (not against the miner's own
bookkeeping): per kind, the records; for commit and PR pairs that change existing Python files,
the share whose prompts carry every changed line's old code; records from vendored or
generated files; the split; and N random pairs per kind written out for a person to read.

    .venv/bin/python bench/bench_mine_quality.py /path/to/repo runs/<run>/mine [--samples 15]

The samples go to <mine dir>/samples.txt; the figures to stdout and <mine dir>/quality.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

_SHOWN = re.compile(r"^--- (.+) \(lines (\d+)-(\d+)\)$", re.M)
_HUNK0 = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.M)
_VENDORED = re.compile(r"(^|/)(vendor|_vendor|vendored|third_party|thirdparty|site-packages|node_modules|"
                       r"extern|external)/|/packages/[^/]+/")
_GENERATED = re.compile(r"generated|do not edit", re.I)


def _git(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], input=data, capture_output=True).stdout


def changed_old_lines(repo: Path, sha: str, base: str, paths: list[str]) -> dict[str, set[int]]:
    """Old path → the old line numbers a commit changes (for an insertion: the line after it)."""
    out: dict[str, set[int]] = defaultdict(set)
    text = _git(repo, "diff", "-M", "-U0", "--no-color", base, sha, "--", *paths).decode("utf-8", "replace")
    for part in text.split("\ndiff --git ")[0:]:
        m = re.search(r"^--- a/(.+)$", part, re.M)
        if not m:
            continue
        for a, n in _HUNK0.findall(part):
            a, n = int(a), int(n or 1)
            out[m.group(1)].update(range(a, a + n) if n else [max(1, a)])
    return out


_PART = re.compile(r"belongs in lines (\d+)-(\d+) of `([^`]+)`\.")


def coverage(repo: Path, records: list[dict]) -> dict:
    """Per pair: does its prompt show the old code of every line it changes (its files' changed
    lines, or for a pair cut to a region, those inside the region it names)? Counted over pairs
    that change existing Python files; per change: do its pairs together cover all of it (a
    change split into more parts than `max_parts`, or with a part too long to fit, does not)."""
    by_sha = defaultdict(list)
    for r in records:
        if r["kind"] in ("commit", "pr"):
            by_sha[r["shas"][0]].append(r)
    out = Counter()
    missing = []
    for sha, rs in by_sha.items():
        py = sorted({f for r in rs for f in r["files"] if f.endswith(".py")})
        if not py:
            continue
        changed = {p: ls for p, ls in changed_old_lines(repo, sha, sha + "^", py).items() if ls}
        if not changed:  # new files only: there is no code before
            continue
        union: dict[str, set[int]] = defaultdict(set)
        for r in rs:
            shown: dict[str, set[int]] = defaultdict(set)
            for path, lo, hi in _SHOWN.findall(r["instruction"]):
                shown[path].update(range(int(lo), int(hi) + 1))
                union[path].update(range(int(lo), int(hi) + 1))
            need = {p: ls for p, ls in changed.items() if p in r["files"]}
            if m := _PART.search(r["instruction"]):
                lo, hi, path = int(m.group(1)), int(m.group(2)), m.group(3)
                need = {path: {x for x in changed.get(path, ()) if lo <= x <= hi}}
            need = {p: ls for p, ls in need.items() if ls}
            if not need:
                continue
            out["pairs"] += 1
            if all(ls <= shown[p] for p, ls in need.items()):
                out["pairs_full"] += 1
            elif len(missing) < 5:
                missing.append(r["id"])
        out["changes"] += 1
        out["changes_full"] += all(ls <= union[p] for p, ls in changed.items())
    return {**out, "pair_share": round(out["pairs_full"] / max(1, out["pairs"]), 3),
            "change_share": round(out["changes_full"] / max(1, out["changes"]), 3), "missing_pairs": missing}


def vendored_or_generated(repo: Path, records: list[dict]) -> Counter:
    out = Counter()
    heads = []
    for r in records:
        paths = r.get("files") or [r.get("path")]
        if any(p and _VENDORED.search(p) for p in paths):
            out["vendored"] += 1
        for p in paths:
            if p and r["kind"] != "pr":
                heads.append((r["id"], f"{r['shas'][0]}:{p}"))
    data = _git(repo, "cat-file", "--batch", data="".join(f"{spec}\n" for _, spec in heads).encode())
    pos, flagged = 0, set()
    for rid, _ in heads:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if len(header) < 3:
            pos = end + 1
            continue
        size = int(header[2])
        body = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
        head = b"\n".join(body.split(b"\n", 10)[:10]).decode("utf-8", "replace")
        if any(line.lstrip().startswith(("#", "//", "..", "/*", "*", "<!--")) and _GENERATED.search(line)
               for line in head.split("\n")):
            flagged.add(rid)
    out["generated"] = len(flagged)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path)
    ap.add_argument("mine", type=Path)
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    records = [json.loads(line) for line in (args.mine / "records.jsonl").open()]
    stats = json.loads((args.mine / "mine_stats.json").read_text())
    result = {
        "records": dict(Counter(r["kind"] for r in records)),
        "code_before": coverage(args.repo, records),
        "vendored_generated": dict(vendored_or_generated(args.repo, records)),
        "split": stats.get("split"), "cut": {k: v.get("cut") for k, v in stats["sources"].items() if v.get("cut")},
        "dropped": {k: v["dropped"] for k, v in stats["sources"].items()},
    }
    rng = random.Random(args.seed)
    with (args.mine / "samples.txt").open("w") as out:
        for kind in sorted({r["kind"] for r in records} - {"fim_source"}):
            pool = [r for r in records if r["kind"] == kind]
            for i, r in enumerate(rng.sample(pool, min(args.samples, len(pool))), 1):
                out.write(f"\n{'=' * 30} {kind} {i} {r['id']} {r['shas'][0][:10]} part={r.get('part')}\n")
                out.write(f"{r['instruction']}\n{'-' * 12} RESPONSE\n{r['response']}\n")
    (args.mine / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
