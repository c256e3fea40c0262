"""`preview.md`: a person reads N random pairs per kind before training on them."""

from __future__ import annotations

from conftest import distinct_function, mine_repo


def test_the_preview_shows_n_random_pairs_per_kind_as_the_model_reads_them(tmp_path, repo_builder):
    b = repo_builder()
    for i in range(6):
        b.commit(f"Add the ledger step {i} for the monthly close", {f"pkg/step{i}.py": distinct_function(f"step_{i}", 22)},
                 day=1 + i)
    _, records, out = mine_repo(tmp_path, b.path, "data.mine.preview=2")
    text = (out / "preview.md").read_text()
    commits = [r for r in records if r["kind"] == "commit"]
    assert f"## commit (2 of {len(commits)})" in text
    section = text.split("## commit")[1].split("\n## ")[0]
    shown = [r for r in commits if r["id"] in section]
    assert len(shown) == 2 and all(r["instruction"] in section and r["response"] in section for r in shown)
    assert all(f"## {kind} (" in text for kind in {r["kind"] for r in records})  # every kind
    _, _, again = mine_repo(tmp_path, b.path, "data.mine.preview=2", name="again")
    assert (again / "preview.md").read_text() == text  # the same sample for the same seed
    _, _, none = mine_repo(tmp_path, b.path, "data.mine.preview=0", name="none")
    assert not (none / "preview.md").exists()
