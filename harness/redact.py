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
   tests/test_redact.py pins the plugin set this was checked against.
3. Every regex plugin's own patterns, one by one, and the entropy plugins' own check.
4. detect-secrets itself (`scan_diff`, its public in-memory entry point), on the lines left.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

# What detect-secrets 1.5 misses or cuts short: current token formats (OpenAI project keys,
# Anthropic, Hugging Face, GitLab, Stripe restricted keys, Google, Azure, fine-grained GitHub),
# a JWT's signature (it flags only the header), the body of a PEM private key (it flags only
# the BEGIN line), passwords in URLs and connection strings. Each rule is (needles, regex):
# the regex runs only on a text holding one of its needles (plain substring searches, in C);
# the whole match is the secret, or its `s` group when it has one.
RULES = {
    "private-key": (("PRIVATE KEY",), re.compile(
        r"-----BEGIN[A-Z ]* PRIVATE KEY( BLOCK)?-----[\s\S]*?(?:-----END[A-Z ]* PRIVATE KEY( BLOCK)?-----|\Z)")),
    "anthropic-api-key": (("sk-ant-",), re.compile(r"sk-ant-[a-z0-9]+-[A-Za-z0-9_\-]{32,}")),
    "openai-api-key": (("sk-",), re.compile(
        r"\bsk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
        r"|\bsk-[A-Za-z0-9]{48}\b")),
    "huggingface-token": (("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    "github-token": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    "github-fine-grained-token": (("github_pat_",), re.compile(r"github_pat_[A-Za-z0-9_]{30,}")),
    "gitlab-token": (("gl",), re.compile(
        r"\bgl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_\-]{20,}")),
    "slack-token": (("xox",), re.compile(r"\bxox[abposre]-[A-Za-z0-9\-]{10,}")),
    "slack-webhook": (("hooks.slack.com",), re.compile(
        r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_\-]{20,}")),
    "stripe-key": (("_live_", "_test_", "whsec_"), re.compile(
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}|\bwhsec_[A-Za-z0-9]{24,}")),  # pk_: public
    "google-api-key": (("AIza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    "google-oauth-secret": (("GOCSPX-",), re.compile(r"\bGOCSPX-[A-Za-z0-9_\-]{28}")),
    "aws-access-key": (("AKIA", "ASIA", "ABIA", "ACCA"), re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    "aws-secret-key": (("aws_secret", "AWS_SECRET", "awsSecret", "AwsSecret", "ecret_access_key",
                        "ECRET_ACCESS_KEY", "ecretAccessKey"), re.compile(
        r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")),
    "azure-storage-key": (("AccountKey=",), re.compile(r"AccountKey=(?P<s>[A-Za-z0-9+/=]{80,90})")),
    "azure-sas-token": (("sig=",), re.compile(r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{30,})")),
    "azure-client-secret": (("8Q~",), re.compile(r"\b[A-Za-z0-9_~.\-]{3}8Q~[A-Za-z0-9_~.\-]{31,34}")),
    "json-web-token": (("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}")),
    "pypi-token": (("pypi-",), re.compile(r"pypi-[A-Za-z0-9_\-]{40,}")),
    "url-password": (("://",), re.compile(  # from "://": a literal start is a fast scan
        r"://(?P<u>[^\s:/@'\"{}$<>]+):(?P<s>[^\s:/@'\"{}$<>]{4,})@")),  # "u:p@": a test's URL
    "connection-string-password": (("assword=", "ASSWORD=", "wd=", "WD="), re.compile(
        r"(?i)\b(?:password|pwd)\s*=\s*(?P<s>[^;\"'\s{}$()<>,\[\]]{3,})(?=;)")),
}
_RULES = [(kind, needles, rule) for kind, (needles, rule) in RULES.items()]
# What a URL or a connection string holds where a password goes when it is not one
_NOT_A_PASSWORD = re.compile(r"(?i)^(x-oauth-basic|x-access-token|password|passwd|pass|pwd|secret|"
                             r"changeme|x+|\*+|\.+|<[^>]*>|%\(\w+\)s|\$\w+|\$\{[^}]*\})$")
_CHECKSUM = re.compile(r"(?i)sha\d*|md5|hash|checksum|digest|integrity|commit|revision|\brev\b|etag")
# an address is found from its "@" (a regex scanning for the local part tried every word of
# the text: 35 s of 170 on a real history); the local part is matched backwards from there
# \Z, not $: $ also matches before a newline, which made "```python\n@click.command" an address
_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_NOT_PERSONAL = re.compile(r"(?i)^(git|noreply|no-reply|donotreply|do-not-reply|support|info|security|admin|"
                           r"team|help|contact|webmaster|postmaster|abuse|sales|hello|bot)@|"
                           r"@(example\.(com|org|net)|[\w.-]*\.example|localhost|test|invalid)$")
EMAIL_PLACEHOLDER = "<email>"


def _rule_sub(kind: str, rx: re.Pattern, text: str) -> tuple[str, int]:
    """Replace each finding of one rule (its `s` group when it has one); placeholder values of
    a URL or a connection string (templates, "x-oauth-basic") are code, not secrets."""
    n = 0

    def repl(m: re.Match) -> str:
        nonlocal n
        if "s" not in rx.groupindex:
            n += 1
            return placeholder(kind)
        if _NOT_A_PASSWORD.match(m.group("s")) or m.group("s").startswith("<secret:"):
            return m.group(0)
        n += 1
        start, end = m.span("s")
        return m.group(0)[:start - m.start()] + placeholder(kind) + m.group(0)[end - m.start():]
    return rx.sub(repl, text), n


def redact_emails(text: str) -> tuple[str, int]:
    """Personal e-mail addresses → `<email>` (role and example addresses stay, and so does the
    user@host of a URL)."""
    if "@" not in text:
        return text, 0
    out, last, n, at = [], 0, 0, text.find("@")
    while at != -1:
        local = _LOCAL.search(text, max(last, at - 64), at)
        domain = _DOMAIN.match(text, at + 1)
        if local and domain and (local.start() == 0 or text[local.start() - 1] not in "._%+-"):
            address = text[local.start():domain.end()]
            line = text[text.rfind("\n", 0, local.start()) + 1:local.start()]
            if not _NOT_PERSONAL.search(address) and not re.search(r"://\S*$", line):
                out += [text[last:local.start()], EMAIL_PLACEHOLDER]
                last, n = domain.end(), n + 1
        at = text.find("@", max(at + 1, last))
    return "".join(out) + text[last:], n


def _false_positive(kind: str, line: str, value: str) -> bool:
    """detect-secrets findings that are code: a URL whose credentials are a template or a
    placeholder, a hex digest on a line about checksums (public by design)."""
    if kind == "Basic Auth Credentials":
        m = re.search(r"://([^\s:/@]*):([^\s:/@]*)@", line)
        return bool(m and ("{" in m.group(1) or "$" in m.group(1) or _NOT_A_PASSWORD.match(m.group(2))
                           or m.group(2).startswith("<secret:")))
    if kind == "Hex High Entropy String":
        return len(value) in (32, 40, 56, 64, 96, 128) and bool(_CHECKSUM.search(line))
    return False


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
def _settings() -> None:
    """detect-secrets' settings for every scan in this process, set once: all plugins, and
    the default filters less "the file must exist" (the text is in memory). What
    `default_settings()` sets on entry; entered and left per scan, it rebuilt every plugin and
    filter cache twice a scan, half of a scan's time. Nothing else here uses detect-secrets'
    global settings."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import cache_bust, configure_settings_from_baseline, get_settings

    cache_bust()
    configure_settings_from_baseline({"plugins_used": [
        {"name": cls.__name__} for cls in get_mapping_from_secret_type_to_class().values()]})
    get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")


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
        self._done: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

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

        diff = (f"--- a/{filename}\n+++ b/{filename}\n@@ -0,0 +1,{len(lines)} @@\n"
                + "".join(f"+{line}\n" for line in lines))
        _settings()
        return [(s.line_number - 1, s.type, s.secret_value or "") for s in scan_diff(diff)]

    def redact(self, text: str, filename: str = "message.txt") -> tuple[str, list[str]]:
        """`text` with every secret replaced by its typed placeholder, and the types found.
        Remembered per text and file name (the result depends on nothing else): a merged
        pull request's diff is its branch commit's again, a part's code window another's."""
        if not text:
            return text, []
        key = (text, filename)
        if key in self._done:
            out, kinds = self._done[key]
            return out, list(kinds)
        out, found = self._redact(text, filename)
        if len(text) <= 1 << 16:  # bounded memory: large texts rarely recur
            if len(self._done) >= 20_000:
                self._done.clear()
            self._done[key] = (out, tuple(found))
        return out, found

    def _redact(self, text: str, filename: str) -> tuple[str, list[str]]:
        found: list[str] = []
        for kind, needles, rule in _RULES:
            if needles[0] in text or any(n in text for n in needles[1:]):
                text, n = _rule_sub(kind, rule, text)
                found += [kind] * n
        text, n = redact_emails(text)
        found += ["email"] * n
        hits = self._candidates(text)
        if hits:
            lines = text.split("\n")
            classes = plugins()[2]
            for idx, kind, value in self._scan([lines[i] for i in hits], filename):
                i, cls = hits[idx], classes.get(kind)
                if _false_positive(kind, lines[i], value):
                    continue
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
