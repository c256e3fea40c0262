"""Secrets planted at run time never survive into any file mining writes."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
from pathlib import Path

import pytest
from conftest import RepoBuilder, distinct_function, make_cfg

from harness.io import read_json, read_jsonl
from harness.mine.secrets import Redactor
from harness.stages import run_stage


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def planted() -> dict[str, str]:
    """Fresh fake credentials of every kind we promise to catch (new on every run)."""
    return {
        "aws-access-key": "AKIA" + _rand(16, string.ascii_uppercase + string.digits),
        "github-token": "ghp_" + _rand(36),
        "github-fine-grained-token": "github_pat_" + _rand(22) + "_" + _rand(59),
        "pypi-token": "pypi-" + _rand(80),
        "secret-keyword": "Zq9" + _rand(13),
        "slack-token": "xoxb-" + _rand(11, string.digits) + "-" + _rand(12, string.digits) + "-" + _rand(24),
        "private-key": _rand(64),
    }


def settings_module(s: dict[str, str]) -> str:
    return (f'AWS_KEY = "{s["aws-access-key"]}"\nGITHUB = "{s["github-token"]}"\n'
            f'PAT = "{s["github-fine-grained-token"]}"\nPYPI = "{s["pypi-token"]}"\n'
            f'password = "{s["secret-keyword"]}"\nSLACK = "{s["slack-token"]}"\n'
            f'KEY = """-----BEGIN RSA PRIVATE KEY-----\n{s["private-key"]}\n'
            '-----END RSA PRIVATE KEY-----"""\n')


def test_no_planted_secret_survives_in_any_output_or_cache_file(tmp_path):
    s = planted()
    b = RepoBuilder(tmp_path / "app")
    b.commit("Create the app with its entry point", {"app/main.py": distinct_function("main_entry", 24)}, day=1)
    b.commit("Read the service settings at start-up\n\nThe deploy token for now is "
             f"{s['github-token']}; rotate it soon.",
             {"app/settings.py": settings_module(s) + distinct_function("load_settings", 20)}, day=2)
    for i in range(4):
        b.commit(f"Add the report_{i} endpoint for the dashboard",
                 {f"app/report{i}.py": distinct_function(f"report_{i}", 22)}, day=3 + i)
    export = tmp_path / "prs.jsonl"
    hunk = f'@@ -1,2 +1,3 @@\n+TOKEN = "{s["github-token"]}"'
    export.write_text(json.dumps({
        "pull": {"number": 3, "title": "Settings", "merged_at": "2024-01-03T12:00:00Z",
                 "merge_commit_sha": b.sha("HEAD~3"), "commits": 1, "user": {"login": "ann"},
                 "body": f"Uses the PyPI token {s['pypi-token']} for uploads."},
        "comments": [{"id": 1, "path": "app/settings.py", "original_line": 1, "diff_hunk": hunk,
                      "original_commit_id": "0" * 40, "created_at": "2024-01-03T13:00:00Z",
                      "user": {"login": "rev"},
                      "body": f"Never commit {s['aws-access-key']}!\n```suggestion\n"
                              "TOKEN = os.environ['TOKEN']\n```"}],
        "commits": []}) + "\n")
    cfg = make_cfg(tmp_path / "run", b.path, [f"data.mine.github.export={export}", "data.mine.test_fraction=0.2",
                                              "data.mine.max_author_share=1.0"], tmp_path / "cache")
    run_stage(cfg, "mine")

    out = tmp_path / "run" / "mine"
    records = list(read_jsonl(out / "records.jsonl"))
    stats = read_json(out / "mine_stats.json")
    assert set(s) <= set(stats["secrets_redacted"])
    settings = next(r for r in records if r.get("instruction", "").startswith("Read the service"))
    for kind in ("aws-access-key", "github-token", "github-fine-grained-token", "pypi-token", "private-key"):
        assert f"<secret:{kind}>" in settings["response"], kind
    assert "<secret:github-token>" in settings["instruction"]  # the commit message too
    assert set(settings["redactions"]) >= {"aws-access-key", "pypi-token", "private-key"}
    [pr] = [r for r in records if r["kind"] == "pr"]
    assert "<secret:pypi-token>" in pr["instruction"]
    [fix] = [r for r in records if r["kind"] == "review_fix"]  # from the suggestion block
    assert "<secret:aws-access-key>" in fix["instruction"] and "os.environ" in fix["response"]

    texts = []
    for f in [*tmp_path.joinpath("run").rglob("*"), *tmp_path.joinpath("cache").rglob("*")]:
        if f.is_file() and f.suffix not in (".sqlite", ".sqlite-wal", ".sqlite-shm"):
            texts.append(f.read_bytes().decode("utf-8", "replace"))
    db = sqlite3.connect(tmp_path / "cache" / "mine" / "commits.sqlite")
    # cached results are pickles, which hold strings as their UTF-8 bytes
    texts += [data.decode("utf-8", "replace") for (data,) in db.execute("SELECT data FROM commit_results")]
    assert len(texts) > 10
    for kind, value in s.items():
        assert not any(value in t for t in texts), f"{kind} survived"


def test_each_kind_is_replaced_by_its_typed_placeholder():
    s = planted()
    text, found = Redactor().redact(settings_module(s) + "x = 1\n", "settings.py")
    assert text.endswith("x = 1\n") and 'GITHUB = "<secret:github-token>"' in text
    assert "KEY = \"\"\"<secret:private-key>\"\"\"" in text
    assert set(found) >= set(s)
    assert not any(v in text for v in s.values())


def test_ordinary_code_is_left_alone():
    code = Path(json.__file__).read_text()
    assert Redactor().redact(code, "json/__init__.py") == (code, [])


def test_the_line_gates_flag_everything_detect_secrets_flags(tmp_path):
    """The cheap gates in front of detect-secrets must not hide a single finding: on real code
    plus planted secrets, gated scanning finds exactly what scanning every line finds."""
    lines = [line for mod in (string, json, sqlite3) for line in Path(mod.__file__).read_text().split("\n")]
    lines += [line for line in settings_module(planted()).split("\n")
              if "PRIVATE KEY" not in line]  # multi-line: handled by our rule, not per line
    lines += ['url = "https://bob:hunter2hunter@example.com/x"', 'h = "9f86d081884c7d65"',
              "api_key: abcdef123456"]
    redactor = Redactor()
    everywhere = {i for i, _, _ in redactor._scan(lines, "corpus.py")}
    assert everywhere, "the corpus must contain findings"
    assert set(redactor._candidates("\n".join(lines))) >= everywhere


def test_the_gates_were_checked_against_this_detect_secrets_plugin_set():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    names = {c.__name__ for c in get_mapping_from_secret_type_to_class().values()}
    assert names == {
        "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector", "BasicAuthDetector",
        "CloudantDetector", "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector",
        "Base64HighEntropyString", "HexHighEntropyString", "IbmCloudIamDetector",
        "IbmCosHmacDetector", "IPPublicDetector", "JwtTokenDetector", "KeywordDetector",
        "MailchimpDetector", "NpmDetector", "OpenAIDetector", "PrivateKeyDetector",
        "PypiTokenDetector", "SendGridDetector", "SlackDetector", "SoftlayerDetector",
        "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
    }, "detect-secrets' plugins changed: re-check TRIGGER in harness/mine/secrets.py"


@pytest.mark.parametrize("text", ["", "no secrets here\n", "\n\n"])
def test_empty_and_clean_text_round_trips(text):
    assert Redactor().redact(text) == (text, [])
