"""Secrets never reach a record: detect-secrets plus rules for what it misses, redacted with
typed placeholders such as `<secret:aws-access-key>`.

detect-secrets checks each line with ~27 plugins and its filters, ~0.17 ms a line here: on a
large history that alone would cost more than mining. Most lines cannot hold a secret, so lines
pass three gates, each cheaper and coarser than the next:

1. `TRIGGER` (~1.5 µs a line; ~10% of real code lines pass): what every detect-secrets 1.5
   plugin needs at the least: a 16+ character token (every long-token plugin), `://` (basic
   auth and URL plugins), a dotted quad (public IPs), a quoted 9+ character string (the entropy
   plugins: n characters carry at most log2(n) bits, and hex needs > 3), a keyword of the
   keyword plugin, or the short literal prefixes of the rest (Artifactory, JWT, npm, Slack,
   private keys). tests/mine/test_mine_secrets.py pins the plugin set this was checked against.
2. Every regex plugin's own patterns, combined.
3. detect-secrets itself (`scan_diff`, its public in-memory entry point), on the lines left.
"""

from __future__ import annotations

import bisect
import itertools
import re
import string
from functools import cached_property

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
    r"[A-Za-z0-9+/=_\-]{16,}|://|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    rf"""|['"][{re.escape(_B64_CHARS)}]{{9,}}['"]"""
    r"|AKC[a-zA-Z0-9]{10}|AP[\dA-F][a-zA-Z0-9]{8}|eyJ|_authToken|PRIVATE KEY|PuTTY|(?i:xox)"
)


def placeholder(kind: str) -> str:
    return f"<secret:{slug(kind)}>"


def slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


class Redactor:
    """Redact secrets from text (one per process: it remembers lines it has seen clean)."""

    def __init__(self) -> None:
        # lines that passed the gates: the same code recurs in diff context and code windows
        self._clean: set[str] = set()

    @cached_property
    def _plugins(self):
        """(keyword regex, combined regex-plugin patterns, type → plugin class)."""
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.keyword import DENYLIST

        classes = get_mapping_from_secret_type_to_class()
        parts = []
        for cls in classes.values():
            for p in getattr(cls, "denylist", ()):
                flags = "".join(f for f, v in (("i", re.I), ("s", re.S), ("x", re.X)) if p.flags & v)
                parts.append(f"(?{flags}:{p.pattern})")
        return re.compile("|".join(DENYLIST)), re.compile("|".join(parts), re.M), classes

    @cached_property
    def _entropy(self):
        """The entropy plugins' own checks: (quoted-string regex, hex limit, base64 limit)."""
        from detect_secrets.plugins.high_entropy_strings import (
            Base64HighEntropyString,
            HexHighEntropyString,
        )

        b64, hx = Base64HighEntropyString(), HexHighEntropyString()
        return b64.regex, lambda s: (hx.calculate_shannon_entropy(s) > hx.entropy_limit
                                     if all(c in string.hexdigits for c in s)
                                     else b64.calculate_shannon_entropy(s) > b64.entropy_limit)

    def _candidates(self, lines: list[str]) -> list[int]:
        """Indices of the lines any plugin could flag. The gates run over the lines joined (one
        C loop per gate); lines seen clean before are not looked at again."""
        keywords, patterns, _ = self._plugins
        quoted, high = self._entropy
        todo = [i for i, line in enumerate(lines) if line not in self._clean]
        if not todo:
            return []
        text = "\n".join(lines[i] for i in todo)
        starts = list(itertools.accumulate((len(lines[i]) + 1 for i in todo), initial=0))
        at = lambda pos: todo[bisect.bisect_right(starts, pos) - 1]  # noqa: E731
        out = {at(m.start()) for m in keywords.finditer(text.lower())}
        for i in sorted({at(m.start()) for m in TRIGGER.finditer(text)} - out):
            line = lines[i]
            if patterns.search(line) or any(high(q[1]) for q in quoted.findall(line)):
                out.add(i)
        if len(self._clean) > 500_000:  # bounded memory on very long histories
            self._clean.clear()
        self._clean.update(lines[i] for i in todo if i not in out)
        return sorted(out)

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
        lines = text.split("\n")
        hits = self._candidates(lines)
        if hits:
            classes = self._plugins[2]
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
