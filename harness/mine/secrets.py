"""Secrets never reach a record: detect-secrets plus rules for what it misses, redacted with
typed placeholders such as `<secret:aws-access-key>`.

detect-secrets checks each line with ~27 plugins and its filters, ~0.17 ms a line here: on a
large history that alone would cost more than mining. Most lines cannot hold a secret, so lines
pass four gates, each cheaper and coarser than the next:

1. Byte searches over the whole text (~2 ns a byte): `bytes.translate` folds a character class
   into one byte, so "20 token characters in a row" becomes a plain substring search; a line
   goes on only if it holds one of the substrings without which gate 2 cannot match.
2. `TRIGGER` or a keyword of the keyword plugin, per line: what every detect-secrets 1.5
   plugin needs at the least: a 20+ character token (every long-token plugin: the shortest
   without a literal prefix of its own here is AWS's AKIA + 16; 7% of the lines of the
   standard library hold a 16+ token, 3% a 20+ one), `://` (basic
   auth and URL plugins), a dotted quad (public IPs), a quoted 9+ character string (the entropy
   plugins: n characters carry at most log2(n) bits, and hex needs > 3), or the short literal
   prefixes of the rest (Artifactory, JWT, npm, Slack, private keys).
   tests/mine/test_mine_secrets.py pins the plugin set this was checked against.
3. Every regex plugin's own patterns, one by one, and the entropy plugins' own check.
4. detect-secrets itself (`scan_diff`, its public in-memory entry point), on the lines left.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

# What detect-secrets 1.5 misses: fine-grained GitHub tokens, PyPI tokens that are not the
# pypi.org/test.pypi.org macaroon prefix, and the body of a PEM private key (it flags only
# the BEGIN line, which would leave the key itself in the text).
RULES = {
    "github-fine-grained-token": re.compile(r"github_pat_[A-Za-z0-9_]{30,}"),
    "pypi-token": re.compile(r"pypi-[A-Za-z0-9_\-]{40,}"),
    "private-key": re.compile(r"-----BEGIN[A-Z ]* PRIVATE KEY( BLOCK)?-----[\s\S]*?"
                              r"(?:-----END[A-Z ]* PRIVATE KEY( BLOCK)?-----|\Z)"),
}
_B64_CHARS = string.ascii_letters + string.digits + "+/\\-_="
TRIGGER = re.compile(
    r"[A-Za-z0-9+/=_\-]{20,}|://|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    rf"""|['"][{re.escape(_B64_CHARS)}]{{9,}}['"]"""
    r"|AKC[a-zA-Z0-9]{10}|AP[\dA-F][a-zA-Z0-9]{8}|eyJ|_authToken|PRIVATE KEY|PuTTY|(?i:xox)"
)


def _fold(groups: dict[bytes, bytes]) -> bytes:
    """A `bytes.translate` table mapping each character of a group to its byte, newlines to
    themselves and everything else to a space."""
    table = bytearray(b" " * 256)
    table[10] = 10
    for chars, to in groups.items():
        for c in chars:
            table[c] = to[0]
    return bytes(table)


_TOKENS = _fold({(string.ascii_letters + string.digits + "+/=_-").encode(): b"a", b"\\": b"b",
                 b"'\"": b"q"})
_NUMBERS = _fold({string.digits.encode(): b"0", b".": b"."})
_QUOTED = re.compile(rb"q[ab]{9,}q")  # TRIGGER's quoted branch, on the _TOKENS folding
# (folded text or raw or lowercased, needle): a line that holds none of these cannot match
# TRIGGER nor a keyword (each keyword contains one of the lowercase needles)
_NEEDLES = [("tokens", b"a" * 20), ("numbers", b"0.0"),
            *(("raw", n) for n in (b"://", b"AKC", b"AP", b"eyJ", b"_authToken", b"PRIVATE KEY", b"PuTTY")),
            *(("lower", n) for n in (b"xox", b"key", b"pass", b"pwd", b"secret", b"contrase"))]


def _gate(text: str) -> list[int]:
    """Indices of the lines of `text` that hold a needle (gate 1), in order."""
    raw = text.encode("utf-8", "surrogatepass")
    views = {"raw": raw, "lower": raw.lower(), "tokens": raw.translate(_TOKENS),
             "numbers": raw.translate(_NUMBERS)}
    found = [m.start() for m in _QUOTED.finditer(views["tokens"])]
    for view, needle in _NEEDLES:
        buf = views[view]
        pos = buf.find(needle)
        while pos != -1:
            found.append(pos)
            end = buf.find(b"\n", pos)  # one hit per line is enough
            pos = -1 if end == -1 else buf.find(needle, end + 1)
    lines, line, last = [], 0, 0
    for pos in sorted(found):
        line += raw.count(b"\n", last, pos)
        last = pos
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def may_hold_secret(text: str) -> bool:
    """False only if `Redactor.redact` returns `text` unchanged: no line of it passes the first
    gate, which every rule and plugin needs."""
    return bool(_gate(text))


def placeholder(kind: str) -> str:
    return f"<secret:{slug(kind)}>"


def slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


@lru_cache(maxsize=1)
def plugins():
    """(keyword regex, every regex plugin's own patterns, type → plugin class): importing the
    plugins compiles ~200 regexes, so call this before forking workers (they inherit it).
    The patterns are tried one by one: joined into one alternation they took twice as long
    (a literal-prefix search is fast only in a regex of its own)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.keyword import DENYLIST

    classes = get_mapping_from_secret_type_to_class()
    patterns = tuple(p for cls in classes.values() for p in getattr(cls, "denylist", ()))
    return re.compile("|".join(DENYLIST)), patterns, classes


@lru_cache(maxsize=1)
def _entropy():
    """The entropy plugins' own checks: (quoted-string regex, high-entropy test)."""
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    b64, hx = Base64HighEntropyString(), HexHighEntropyString()
    return b64.regex, lambda s: (hx.calculate_shannon_entropy(s) > hx.entropy_limit
                                 if all(c in string.hexdigits for c in s)
                                 else b64.calculate_shannon_entropy(s) > b64.entropy_limit)


class Redactor:
    """Redact secrets from text (one per process: it remembers lines it has seen clean)."""

    def __init__(self) -> None:
        # lines that passed the gates: the same code recurs in diff context and code windows
        self._clean: set[str] = set()

    def _candidates(self, text: str) -> list[int]:
        """Indices of the lines of `text` (split at "\n") any plugin could flag; lines seen
        clean before are not looked at again."""
        keywords, patterns, _ = plugins()
        quoted, high = _entropy()
        hits = _gate(text)
        if not hits:
            return []
        lines, out = text.split("\n"), []
        for i in hits:
            line = lines[i]
            if line in self._clean:
                continue
            if keywords.search(line.lower()) or (TRIGGER.search(line) and (
                    any(p.search(line) for p in patterns) or any(high(q[1]) for q in quoted.findall(line)))):
                out.append(i)
            else:
                self._clean.add(line)
        if len(self._clean) > 500_000:  # bounded memory on very long histories
            self._clean.clear()
        return out

    @staticmethod
    def _scan(lines: list[str], filename: str) -> list[tuple[int, str, str]]:
        """(line index, secret type, secret value) for each detect-secrets finding."""
        from detect_secrets.core.scan import scan_diff
        from detect_secrets.settings import default_settings, get_settings

        diff = (f"--- a/{filename}\n+++ b/{filename}\n@@ -0,0 +1,{len(lines)} @@\n"
                + "".join(f"+{line}\n" for line in lines))
        with default_settings():
            # in-memory text: the "file must exist" filter does not apply
            get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
            return [(s.line_number - 1, s.type, s.secret_value or "") for s in scan_diff(diff)]

    def redact(self, text: str, filename: str = "message.txt") -> tuple[str, list[str]]:
        """`text` with every secret replaced by its typed placeholder, and the types found."""
        if not text:
            return text, []
        found: list[str] = []
        for kind, rule in RULES.items():
            if rule.search(text):  # each rule starts with a literal: a fast scan
                text, n = rule.subn(placeholder(kind), text)
                found += [kind] * n
        hits = self._candidates(text)
        if hits:
            lines = text.split("\n")
            classes = plugins()[2]
            for idx, kind, value in self._scan([lines[i] for i in hits], filename):
                i, cls = hits[idx], classes.get(kind)
                if getattr(cls, "denylist", None):
                    # a regex plugin's reported value may be a capture group (GitHub: "ghp"):
                    # redact its patterns' whole matches
                    for p in cls.denylist:
                        lines[i] = p.sub(placeholder(kind), lines[i])
                elif value:
                    lines[i] = lines[i].replace(value, placeholder(kind))
                found.append(slug(kind))
            text = "\n".join(lines)
        return text, found
