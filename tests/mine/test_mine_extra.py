"""`data.extra`: the user's own examples go through the same redaction, dedup and split as
the mined pairs, and are counted apart."""

from __future__ import annotations

import json

import pytest
from conftest import distinct_function, mine_repo

from harness.errors import HarnessError


def _chat(request: str, reply: str, **extra) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": request},
                                    {"role": "assistant", "content": reply}], **extra})


@pytest.fixture
def repo(repo_builder):
    b = repo_builder()
    for i in range(8):
        b.commit(f"Add the ledger step {i} for the monthly close", {f"pkg/step{i}.py": distinct_function(f"step_{i}", 22)},
                 day=1 + i)
    return b


def test_the_users_examples_are_merged_redacted_deduplicated_and_split(tmp_path, repo):
    token = "ghp_" + "Xq7" * 12
    lines = [
        _chat("Explain our retry policy for the ledger API", f"Retry 3 times; the key is {token}, ask ann@corp.io."),
        _chat("Explain our retry policy for the ledger API", f"Retry 3 times; the key is {token}, ask ann@corp.io."),
        _chat("Write the close-of-month checklist helper", "def checklist():\n    return ['lock', 'sum', 'sign']\n",
              date="2024-01-08"),
        json.dumps({"text": distinct_function("extra_helper", 20), "path": "tools/helper.py"}),
    ]
    extra = tmp_path / "mine.jsonl"
    extra.write_text("\n".join(lines) + "\n")
    stats, records, _ = mine_repo(tmp_path, repo.path, f"data.extra={extra}", "data.mine.test_cutoff=2024-01-07")
    chats = [r for r in records if r["kind"] == "extra"]
    assert len(chats) == 2 and stats["sources"]["extra"] == {"in": 3, "dropped": {"exact_duplicate": 1}, "out": 2}
    policy = next(r for r in chats if r["instruction"].startswith("Explain"))
    assert token not in policy["response"] and "<secret:github-token>" in policy["response"]
    assert "<email>" in policy["response"] and policy["split"] == "train"  # undated: train
    dated = next(r for r in chats if r["instruction"].startswith("Write"))
    assert dated["split"] == "test"  # dated after the cutoff: held out like the repository's own
    [fim] = [r for r in records if r.get("origin") == "extra" and r["kind"] == "fim_source"]
    assert fim["path"] == "tools/helper.py" and fim["split"] == "train"
    assert stats["extra"] == {"files": [str(extra)], "chat_in": 3, "fim_in": 1,
                              "kept": {"extra": 2, "fim_source": 1}}


@pytest.mark.parametrize("line, why", [
    ("{not json", "not JSON"),
    (json.dumps({"prompt": "x"}), "neither `messages` nor `text`"),
    (json.dumps({"messages": [{"role": "user", "content": "only a question"}]}), "expected one user turn then one assistant"),
])
def test_a_bad_line_is_named_before_any_mining(tmp_path, repo, line, why):
    extra = tmp_path / "bad.jsonl"
    extra.write_text(_chat("Explain the ledger", "It sums.") + "\n" + line + "\n")
    with pytest.raises(HarnessError, match=f"bad.jsonl:2: {why}"):
        mine_repo(tmp_path, repo.path, f"data.extra={extra}")
    with pytest.raises(HarnessError, match="is not a file"):
        mine_repo(tmp_path, repo.path, f"data.extra={tmp_path / 'missing.jsonl'}", name="missing")
