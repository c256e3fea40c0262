"""Whole-file sources: FIM files and docstring pairs (Python AST: signature + docstring →
the function).

Train: every matching file in the tree of the last mainline commit before the cutoff. Test:
the files test commits changed, with the line numbers those commits added (held-out FIM holes
are cut there, so their text was never trained on), and the functions they added.

A blob's derived data (redacted text, docstring pairs, signatures) depends only on its sha and
the settings, so it is cached like a commit's result.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator

from git import Repo

from harness.mine import dedup
from harness.mine.classes import generated_header
from harness.mine.filters import path_skipped
from harness.mine.records import record_id
from harness.redact import Redactor, placeholder


def fim_ok(path: str, o: dict) -> bool:
    return (path.endswith(tuple(o["fim_extensions"])) and not path_skipped(path, o["skip_paths"])
            and not path_skipped(path, o["vendored_paths"]))


def tree_blobs(repo: Repo, sha: str, o: dict) -> list[tuple[str, str]]:
    """(path, blob sha) of the FIM files in the tree at `sha`."""
    return [(b.path, b.hexsha) for b in repo.commit(sha).tree.traverse()
            if b.type == "blob" and fim_ok(b.path, o) and b.size <= o["fim_max_file_bytes"]]


def _functions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Module-level functions and methods (nested functions are part of their parent's body)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def docstring_pairs(text: str, o: dict) -> list[dict]:
    """Functions with a docstring: signature + docstring → the whole function (dedented, so a
    reply never starts with whitespace, which tokenizers merge into the turn's first token)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.split("\n")
    out = []
    for name, node in _functions(tree.body):
        if len(node.body) < 2 or ast.get_docstring(node) is None:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        n_body = node.end_lineno - node.body[1].lineno + 1
        if o["docstring"]["min_body_lines"] <= n_body <= o["docstring"]["max_body_lines"]:
            code = textwrap.dedent("\n".join(lines[first - 1:node.end_lineno]))
            header_lines = node.body[0].end_lineno - first + 1
            out.append({"name": name, "line": node.lineno,
                        "header": "\n".join(code.split("\n")[:header_lines]), "body": code})
    return out


def _added_pairs(text: str, added: list[int], o: dict) -> list[dict]:
    """Docstring pairs of the functions whose `def` line is in `added`, parsing only each
    function's block (a test file can be large; its other functions are not wanted)."""
    lines, out = text.split("\n"), []
    for n in sorted(set(added)):
        line = lines[n - 1] if 0 < n <= len(lines) else ""
        code = line.lstrip()
        if not code.startswith(("def ", "async def ")):
            continue
        pad = line[:len(line) - len(code)]
        end = n
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(pad + " ")
                                    or lines[end].startswith(pad + "\t")):
            end += 1
        block = "\n".join(x[len(pad):] for x in lines[n - 1:end]).rstrip("\n")
        out += [dict(p, line=n) for p in docstring_pairs(block, o) if p["line"] == 1]
    return out


def blob_data(data: bytes, path: str, o: dict, redactor: Redactor,
              added: list[int] | None) -> dict | None:
    """Redacted text and docstring pairs of one file (its bytes: `data`); None if the file is
    not UTF-8 text. `sign` adds what dedup and decontamination need.

    `added` is None for a train file; for a test file (never trained on) it holds the lines
    its commit added: only the functions defined there become pairs."""
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if generated_header(text):  # machine-written: not the team's code
        return None
    text, kinds = redactor.redact(text, path)
    pairs = []
    if path.endswith(".py") and o["docstring"]["enabled"]:
        pairs = docstring_pairs(text, o) if added is None else _added_pairs(text, added, o)
    for p in pairs:
        p["instruction"] = (f"Write `{p['name']}` in {path}, as its signature and docstring "
                            f"describe:\n{p['header']}")
    return {"text": text, "redactions": sorted(set(kinds)), "pairs": pairs, "_contaminated": None}


def sign(files: list[dict | None], train: list[bool], o: dict, bench: dedup.Benchmarks | None) -> None:
    """Add signatures and contamination to the `blob_data` of many files, in one pass of each:
    every docstring pair is signed (near dedup compares a test file's pairs with train), the
    whole text of a `train` file is checked for contamination; a whole file is deduplicated by
    content, never by similarity, so it needs no signature."""
    pairs = [p for f in files if f for p in f["pairs"]]
    prints = dedup.fingerprints([(p["instruction"], p["body"]) for p in pairs], o["dedup"]["ngram"],
                                o["dedup"]["num_perm"], bench)
    for p, fp in zip(pairs, prints, strict=True):
        p.update(fp)
    whole = [f for f, t in zip(files, train, strict=True) if f and t]
    for f, dirty in zip(whole, dedup.contamination([f["text"] for f in whole], o["dedup"]["ngram"], bench),
                        strict=True):
        f["_contaminated"] = dirty


def file_records(path: str, sha: str, date: str, split: str, d: dict, name: str,
                 added: list[int] | None = None) -> list[dict]:
    """The fim_source record of a file and the docstring records of its functions (on test
    files, only the functions the test commit added: the rest was in the train tree)."""
    fim = {"id": record_id("fim", sha, path), "kind": "fim_source", "repo": name, "shas": [sha],
           "committed_at": date, "path": path, "content": d["text"], "split": split,
           "redactions": d["redactions"], "_contaminated": d["_contaminated"]}
    if added is not None:
        fim["added_lines"] = added
    docs = [{"id": record_id("docstring", sha, path, p["name"], str(p["line"])), "kind": "docstring",
             "source": "ast", "pr": None, "repo": name, "shas": [sha], "authored_at": date,
             "committed_at": date, "author_id": "", "instruction": p["instruction"],
             "response": p["body"], "files": [path], "added": p["body"].count("\n") + 1,
             "deleted": 0, "split": split,
             "redactions": [k for k in d["redactions"] if placeholder(k) in p["instruction"] + p["body"]],
             "_sig": p["_sig"], "_contaminated": p["_contaminated"], "_key": p["_key"]}
            for p in d["pairs"]]
    return [fim, *docs]
