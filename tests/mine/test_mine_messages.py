"""Messages as instructions: residue removed, meaning kept; non-instructions dropped (messages.py)."""

from __future__ import annotations

import pytest

from harness.mine.messages import clean, quality_reason


def test_conversion_residue_trailers_and_template_boilerplate_are_removed():
    message = """Make the parser accept tabs [skip ci]

Tabs were rejected in indented blocks.
<!-- Thank you for your pull request. Please fill in the checklist. -->
- [ ] I added a changelog entry
Fixes #12.

--HG--
branch : stable
extra : rebase_source : 3f2a9c0d

git-svn-id: http://svn.example.org/repo/trunk@1234 6b8c4a1d-0000-0000-0000-000000000000
Signed-off-by: Ann A <ann@example.com>
Co-authored-by: Bob B <bob@example.com>

🤖 Generated with [Claude Code](https://claude.com/claude-code)
"""
    assert clean(message) == ("Make the parser accept tabs\n\nTabs were rejected in indented blocks.\n\n"
                              "Fixes #12.")


def test_git_status_and_merge_conflict_lists_pasted_into_a_message_are_removed():
    message = ("Document the logging and build the docs from setup.py\n\n"
               "# Changes to be committed:\n#\tmodified:   .gitignore\nmodified:   docs/api.rst\n"
               "new file:   docs/logging.rst\n\nThe logger names are listed per module.\n\n"
               "Conflicts:\n\trequests/sessions.py\n\tdocs/api.rst\n")
    assert clean(message) == ("Document the logging and build the docs from setup.py\n\n"
                              "The logger names are listed per module.")


@pytest.mark.parametrize("message, reason", [
    ("wip", "short_message"),
    ("Update README.md", "low_info_message"),
    ("Fix the tests", "low_info_message"),
    ("Bump version to 2.1.0", "low_info_message"),
    ("pep8", "short_message"),
    ("#1234 #1235 #1236", "not_an_instruction"),
    ("Signed-off-by: Ann A <ann@example.com>", "short_message"),  # nothing left once cleaned
    ("nice and cleanup", "low_info_message"),
    ("Pre commit update", "low_info_message"),
    ("improvements to index", "low_info_message"),
    ("Small tweaks to setup.py", "low_info_message"),
    ("Added Context.scope", None),  # terse, but it says what
    ("document defaults", None),
    ("Improve the retry backoff for idle pools", None),
    ("yay cookies", "no_verb_first_line"),  # CommitPackFT: the first line starts with a verb
    ("much better index", "no_verb_first_line"),
    ("requests cookies behaving", "no_verb_first_line"),
    ("cookie support\n\nSessions now keep the cookies the server sets.", None),  # a body explains
    ("manager: get rid of _plugin2hookcallers", None),  # after an area prefix
    ("fix(downstream): resolve env setup issues", None),
    ("hooks: also verify kwargs are per spec", None),  # after an adverb
    ("Renamed multipart_files to files", None),
    ("Add retries to the HTTP adapter", None),
    ("Fixed the off-by-one in the pager", None),  # descriptive is fine
    ("Update README.md\n\nDocument the new --color flag and its default.", None),  # the body explains
    ("Fix 1728 (Fixed up from #1729)", "low_info_message"),  # a reference, not a request
    ("Closes issue #31", "low_info_message"),
    ("Fix #95: Resolve E741 errors", None),  # the errors say what
    ("Fix 1728: keep the proxy headers on redirects", None),
    ("Syncing fork to the original repository", "low_info_message"),
    ("Sync the upstream changes", "low_info_message"),
    ("Update HISTORY and version for v2.5.2", "low_info_message"),
    ("PASS ALL TEH TESTS", "low_info_message"),
    ("Make the tests pass again", "low_info_message"),
    ("Changelog for 2.31.0 release", "low_info_message"),
    ("Add support for Python 3.14", None),
    ("Require urllib3 1.26 or newer for the proxy fix", None),
])
def test_a_message_must_read_like_an_instruction(message, reason):
    assert quality_reason(message, 10) == reason
