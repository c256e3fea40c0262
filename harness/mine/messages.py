"""Commit and PR messages as instructions: cleaned of what is not the author's request, and
judged on whether they read like one (OctoPack's CommitPackFT kept a commit only when its
message did; ours are its checks in spirit: a first line that states a change, in words).

Cleaning keeps the meaning and removes residue: VCS-conversion blocks (`--HG--` / `branch :`,
`git-svn-id:`), trailers that name people or tools (Signed-off-by, Co-authored-by, ...),
tool footers ("Generated with ..."), CI directives (`[skip ci]`), and pull-request template
boilerplate (HTML comments, unticked checklists, "Thanks for contributing").
"""

from __future__ import annotations

import re

_TRAILER = re.compile(r"^(signed-off-by|co-authored-by|reviewed-by|acked-by|tested-by|reported-by|"
                      r"suggested-by|helped-by|cc|change-id|reviewed-on|pr-url|git-svn-id)\s*:",
                      re.IGNORECASE)
# hg-git / hg-fast-export residue: "--HG--" then "branch : x", "extra : rebase_source : ..."
_HG_FIELD = re.compile(r"^(branch|extra|rename|copy|user|date|tag)\s*:", re.IGNORECASE)
_FOOTER = re.compile(r"^(🤖\s*)?generated (with|by) \[?(claude|copilot|cursor|aider|chatgpt)|"
                     r"^this (pr|pull request) was (automatically )?(created|generated) by",
                     re.IGNORECASE)
_CI = re.compile(r"\[(skip ci|ci skip|no ci|skip actions|actions skip)\]", re.IGNORECASE)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TEMPLATE = re.compile(
    r"^\s*([-*] \[[ xX]\]|#+\s*(checklist|pull request checklist|description|"
    r"type of change)\s*:?\s*$|(thanks?( you)? for (contributing|your contribution)))",
    re.IGNORECASE)
_BLANKS = re.compile(r"\n{3,}")
# `git status` pasted into the message: "modified:   docs/api.rst", "# Changes to be committed:"
_STATUS = re.compile(r"^#?\s*((modified|new file|deleted|renamed|both modified|typechange):\s+\S.*|"
                     r"changes (to be committed|not staged for commit):|on branch \S+)\s*$", re.IGNORECASE)

# First lines that say nothing a model could act on (CommitPackFT dropped the same kinds).
_LOW_INFO = re.compile(
    r"^\s*(wip|work in progress|update[sd]?|fix(es|ed)?|changes?|misc|tmp|temp|tests?|cleanup|"
    r"clean ?up|typos?|fix(ed)? typos?|minor( fix(es)?| changes?)?|stuff|refactor(ing)?|lint(ing)?|"
    r"pep ?8|flake8|format(ting)?|more|oops|again|done|save|commit|"
    r"merge\b.*|bump\b.*|v?\d+(\.\d+)+.*|release\b.*|prepare (for )?release\b.*|"
    r"(back )?to (dev|development)( version)?|initial commit|first commit|\.+|"
    r"(update|run|apply|bump) pre[- ]?commit\b.*|pre[- ]?commit\b.*(update|autoupdate|fixes)|"
    r"\[pre-commit\.ci\].*|sync(s|ed|ing)?\b.*\b(fork|upstream)\b.*|"
    r"(make )?(all )?(the )?tests? pass(es|ing)?( again)?|pass(es|ing)? (all )?(the |teh )?tests?)\s*[.!]*\s*$",
    re.IGNORECASE)
# "Update README.md", "fix tests", "changes to foo.py": one verb and one word or file name
_VERB_THING = re.compile(
    r"^\s*(update[sd]?|fix(es|ed)?|change[sd]?|edit(s|ed)?|modif(y|ied|ies)|tweak(s|ed)?|"
    r"cleanup|clean up|changes to|more|improve[sd]?)\s+(the\s+)?\S+\s*[.!]*\s*$",
    re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
# "Update HISTORY and version for v2.5.2": a release's bookkeeping, whatever its verb
_RELEASE = re.compile(r"\b(release|version|history|changelog|changes|news)\b.*\bv?\d+\.\d+|"
                      r"\bv?\d+\.\d+(\.\d+)*\b.*\b(release|released|version|history|changelog)\b", re.IGNORECASE)
# "Fix 1728 (Fixed up from #1729)", "Closes issue #31": a reference, not what to do
_REFERENCE = {"fix", "fixes", "fixed", "fixing", "close", "closes", "closed", "resolve", "resolves", "resolved",
              "see", "ref", "refs", "re", "issue", "issues", "gh", "bug", "ticket", "pr", "up", "from", "for",
              "and", "of", "the", "to", "in", "on", "again", "part", "followup", "follow-up"}
# "nice and cleanup", "improvements to index", "small tweaks": a vague head and at most one
# word that says what changed (file names say where, not what)
_VAGUE = {"improvement", "improvements", "improve", "improved", "improves", "cleanup", "cleanups", "clean",
          "cleaning", "tweak", "tweaks", "tweaked", "change", "changes", "changed", "update", "updates",
          "updated", "updating", "fix", "fixes", "fixed", "fixing", "misc", "minor", "small", "nice", "more",
          "better", "refactor", "refactored", "refactoring", "polish", "polished", "edit", "edits", "work",
          "stuff", "various", "some", "few", "little", "bit", "things", "tidy", "tidying", "typo", "typos"}
_FILLER = {"and", "to", "the", "a", "an", "of", "for", "in", "on", "with", "up", "some", "more", "few",
           "bit", "little", "small", "minor", "various", "stuff", "things", "it", "this", "that", "etc"}
# OctoPack kept a commit only when its message started with a verb of a fixed list (CommitPackFT
# §2): a first line without a verb ("yay cookies", "much better index", "requests cookies
# behaving") seldom says what to do. A body that explains, or a verb after an "area:" prefix
# or an adverb, is enough here.
_VERBS = frozenset(re.findall(r"\w+", """
add adapt adjust allow alter apply avoid backport bump build cache call catch change check clarify
clean close collect combine compute configure consolidate convert copy correct create deal declare
decode default define delete deprecate describe detect disable discard display document drop dump
emit enable encode enforce ensure escape expand expose extend extract factor fail fetch filter fix
flush follow force format forward generate get guard handle hide ignore implement import improve
include increase indent inherit initialize inline insert install introduce invoke isolate keep let
limit link list load lock log look make mark match merge migrate mock modify move normalize note open
optimize override parse pass patch pin port prefer prepare preserve prevent print process propagate
protect provide prune publish pull push put raise read rebuild recognize redirect reduce refactor
refer reformat register reject release reload remove rename reorder reorganize repair replace report
require reraise reset resolve respect restore restrict restructure retry return reuse revert review
rework rewrite run save scan separate serialize set setup share show silence simplify skip sort split
start stop store strip subclass support suppress swap switch sync take teach test throw tidy track
translate treat trim truncate try tweak unify unpin unwrap update upgrade use validate verify warn
wrap write yield speed explain vendor regenerate refresh round work made wrote rewrote took kept got
ran found began hold
"""))
_ADVERBS = {"also", "now", "properly", "just", "vastly", "simply", "correctly", "really", "actually",
            "finally", "always", "never", "better", "explicitly", "again", "only", "partially", "mostly"}
_PREFIX = re.compile(r"^(\w[\w./\- ]{0,30}|\[[^\]]+\]|\w+\([^)]*\)!?)\s*:\s+")


def _verb(word: str) -> bool:
    """Whether `word` is a listed verb in any of its forms (adds, added, adding)."""
    w = word.lower().strip("`'\",.!:;()[]")
    stems = {w, w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w,
             w[:-1] if w.endswith("d") else w, w[:-2] if w.endswith("ed") else w,
             w[:-3] if w.endswith("ing") else w, w[:-3] + "e" if w.endswith("ing") else w,
             w[:-3] + "y" if w.endswith(("ied", "ies")) else w,
             w[:-3] if w.endswith("ing") and len(w) > 5 and w[-4] == w[-5] else w,
             w[:-2] if w.endswith("ed") and len(w) > 4 and w[-3] == w[-4] else w}
    return bool(stems & _VERBS)


def starts_with_verb(subject: str) -> bool:
    """The first line's first word (after an "area:" prefix and adverbs) is a verb."""
    words = _PREFIX.sub("", subject.strip(), count=1).split()
    while words and words[0].lower() in _ADVERBS:
        words = words[1:]
    return bool(words) and _verb(words[0])


_FILE = re.compile(r"^[\w./-]+\.(py|pyi|rst|md|txt|html|css|js|cfg|toml|ya?ml|ini|json|in|sh)$", re.IGNORECASE)


def clean(message: str) -> str:
    """The message as an instruction: residue and boilerplate removed, its meaning kept."""
    text = _HTML_COMMENT.sub("", message.replace("\r\n", "\n"))
    out, in_hg, in_conflicts = [], False, False
    for line in text.split("\n"):
        s = line.strip()
        if s == "--HG--":
            in_hg = True
            continue
        if in_hg and (_HG_FIELD.match(s) or not s):
            continue
        in_hg = False
        if s.lstrip("# ") == "Conflicts:":  # what `git merge` writes: "Conflicts:" then a path a line
            in_conflicts = True
            continue
        if in_conflicts and line[:1] in ("\t", "#") and s:
            continue
        in_conflicts = False
        if _TRAILER.match(s) or _FOOTER.match(s) or _TEMPLATE.match(line) or _STATUS.match(s):
            continue
        out.append(_CI.sub("", line).rstrip())
    return _BLANKS.sub("\n\n", "\n".join(out)).strip()


def quality_reason(message: str, min_chars: int) -> str | None:
    """Why a (cleaned) message does not read like an instruction, or None: too short, a
    low-information first line, or too few words to state a change."""
    text = clean(message)
    subject = text.split("\n", 1)[0]
    if len(text) < min_chars:
        return "short_message"
    if _LOW_INFO.match(subject) and len(text.splitlines()) == 1:
        return "low_info_message"
    if _VERB_THING.match(subject) and len(text.splitlines()) == 1:
        return "low_info_message"
    if len(_WORD.findall(subject)) < 2:  # "#123", "v2", "pep8 stuff.py": no statement of a change
        return "not_an_instruction"
    if len(text.splitlines()) == 1 and (all(w.lower() in _REFERENCE for w in _WORD.findall(subject))
                                        or _RELEASE.search(subject)):
        return "low_info_message"
    words = subject.lower().rstrip(".!").split()
    said = [w for w in words[1:] if w not in _FILLER and w not in _VAGUE and not _FILE.match(w)]
    if words[0].strip(",:") in _VAGUE and len(said) <= 1 and len(text.splitlines()) == 1:
        return "low_info_message"
    if len([x for x in text.split("\n")[1:] if x.strip()]) == 0 and not starts_with_verb(subject):
        return "no_verb_first_line"
    return None
