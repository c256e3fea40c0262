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
from harness.redact import Redactor
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
    out, found = Redactor().redact(code, "json/__init__.py")
    # its author's e-mail address aside (a person's, replaced), every byte stays
    assert found == ["email"] and out == code.replace("bob@redivi.com", "<email>")


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
    }, "detect-secrets' plugins changed: re-check TRIGGER in harness/redact.py"


@pytest.mark.parametrize("text", ["", "no secrets here\n", "\n\n"])
def test_empty_and_clean_text_round_trips(text):
    assert Redactor().redact(text) == (text, [])


def current_formats() -> dict[str, str]:
    """Fresh fake credentials in today's formats (new on every run), by the type they are
    reported as."""
    return {
        "openai-api-key": "sk-proj-" + _rand(74, string.ascii_letters + string.digits + "_-"),
        "anthropic-api-key": "sk-ant-api03-" + _rand(93, string.ascii_letters + string.digits + "_-"),
        "huggingface-token": "hf_" + _rand(34, string.ascii_letters),
        "github-token": "ghs_" + _rand(36),
        "gitlab-token": "glpat-" + _rand(20, string.ascii_letters + string.digits + "_-"),
        "slack-token": "xoxp-" + _rand(12, string.digits) + "-" + _rand(12, string.digits) + "-" + _rand(32),
        "slack-webhook": "https://hooks.slack.com/services/T" + _rand(10, string.ascii_uppercase) + "/B"
                         + _rand(10, string.ascii_uppercase) + "/" + _rand(24),
        "stripe-key": "rk_live_" + _rand(40),
        "google-api-key": "AIza" + _rand(35, string.ascii_letters + string.digits + "_-"),
        "google-oauth-secret": "GOCSPX-" + _rand(28),
        "aws-access-key": "ASIA" + _rand(16, string.ascii_uppercase + string.digits),
        "aws-secret-key": _rand(40, string.ascii_letters + string.digits + "/+"),
        "azure-storage-key": _rand(86, string.ascii_letters + string.digits + "+/") + "==",
        "azure-client-secret": _rand(3) + "8Q~" + _rand(34, string.ascii_letters + string.digits + "_~.-"),
        "json-web-token": "eyJhbGciOiJIUzI1NiJ9.eyJ" + _rand(40) + "." + _rand(43, string.ascii_letters + "_-"),
        "url-password": _rand(14),
        "connection-string-password": _rand(12),
    }


def current_module(s: dict[str, str]) -> str:
    return (
        f'OPENAI = "{s["openai-api-key"]}"\nANTHROPIC_API_KEY = "{s["anthropic-api-key"]}"\n'
        f'hub.login("{s["huggingface-token"]}")\nGH = "{s["github-token"]}"\nGL = "{s["gitlab-token"]}"\n'
        f'SLACK = "{s["slack-token"]}"\nHOOK = "{s["slack-webhook"]}"\nstripe.api_key = "{s["stripe-key"]}"\n'
        f'MAPS = "{s["google-api-key"]}"\nCLIENT_SECRET = "{s["google-oauth-secret"]}"\n'
        f'AWS_ACCESS_KEY_ID = "{s["aws-access-key"]}"\naws_secret_access_key = "{s["aws-secret-key"]}"\n'
        f'AZ = "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s["azure-storage-key"]};'
        'EndpointSuffix=core.windows.net"\n'
        f'AZURE_CLIENT_SECRET = "{s["azure-client-secret"]}"\n'
        f'headers = {{"Authorization": "Bearer {s["json-web-token"]}"}}\n'
        f'DB = "postgresql://app:{s["url-password"]}@db.internal:5432/app"\n'
        f'MSSQL = "Server=tcp:db;Database=app;User Id=app;Password={s["connection-string-password"]};"\n'
    )


def test_every_current_token_format_is_redacted_whole_by_its_type():
    s = current_formats()
    text, found = Redactor().redact(current_module(s), "settings.py")
    for kind, value in s.items():
        assert value not in text, f"{kind} survived"
        assert f"<secret:{kind}>" in text, kind
    assert set(found) >= set(s)
    # the JWT is gone whole (no signature left after the placeholder), the URL keeps its shape
    assert '"Bearer <secret:json-web-token>"' in text
    assert "postgresql://app:<secret:url-password>@db.internal:5432/app" in text
    assert "Password=<secret:connection-string-password>;" in text


@pytest.mark.parametrize("code", [
    'url = f"https://{token}:x-oauth-basic@github.com/{org}/{repo}.git"',
    'url = "https://%(user)s:%(password)s@%(host)s/"',
    'DSN = "postgresql://${DB_USER}:${DB_PASSWORD}@localhost/app"',
    'PIP_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"  # the fixed revision',
    'conn = connect(password=settings.DB_PASSWORD, host=host)',
    "assert select_proxy('hTTp://u:p@Some.Host/path', proxies) == 'socks5://x'",
    "'etag': '\"d41d8cd98f00b204e9800998ecf8427e\"',",
])
def test_templates_placeholders_and_public_checksums_stay_code(code):
    assert Redactor().redact(code, "x.py") == (code, [])


def test_personal_email_addresses_are_replaced_role_and_example_ones_stay():
    text = ('__author__ = "Kenneth Reitz <me@kennethreitz.org>"\n# report to ann.lee+bugs@corp.co.uk\n'
            'EXAMPLE = "someone@example.com"\nREMOTE = "git@github.com:psf/requests.git"\n'
            'SUPPORT = "security@python.org"\n')
    out, found = Redactor().redact(text, "x.py")
    assert out == ('__author__ = "Kenneth Reitz <<email>>"\n# report to <email>\n'
                   'EXAMPLE = "someone@example.com"\nREMOTE = "git@github.com:psf/requests.git"\n'
                   'SUPPORT = "security@python.org"\n')
    assert found == ["email", "email"]


@pytest.mark.parametrize("code", [
    '```python\n@click.command()\ndef less():\n    pass\n```\n',  # Markdown, as in click's docs
    'x = 1\n@app.route("/")\ndef index():\n    return x\n',
])
def test_a_decorator_on_the_line_after_a_word_is_not_an_email_address(code):
    assert Redactor().redact(code, "x.py") == (code, [])
