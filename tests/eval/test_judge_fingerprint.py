"""Every input of an eval result is in the eval stage's fingerprint, so changing one (a rubric's
text, a benchmark file) makes the stage run again instead of reporting stale scores."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import make_cfg

from harness.eval import benchmarks
from harness.io import atomic_write_json
from harness.stages import fingerprint

ROOT = Path(__file__).resolve().parents[2]


def eval_fingerprint(tmp_path: Path, rubric: Path) -> str:
    cfg = make_cfg(tmp_path / "run", overrides=[f"judge.rubric={rubric}"])
    # the finished upstream stage, as the stage runner leaves it
    atomic_write_json(tmp_path / "run" / "train" / "stage.json", {"fingerprint": "train-fp"})
    return fingerprint(cfg, "eval")


def test_editing_the_rubric_changes_the_eval_fingerprint(tmp_path):
    rubric = tmp_path / "rubric.yaml"
    shutil.copy(ROOT / "judges" / "code_change.yaml", rubric)
    before = eval_fingerprint(tmp_path, rubric)
    assert eval_fingerprint(tmp_path, rubric) == before  # nothing changed: up to date

    text = rubric.read_text()
    rubric.write_text(re.sub(r"\nversion: \d+", "\nversion: 99", text).replace(
        "Does the response implement the requested change correctly?",
        "Does the response implement exactly the requested change?"))
    assert eval_fingerprint(tmp_path, rubric) != before


def test_editing_a_benchmark_file_changes_the_eval_fingerprint(tmp_path, monkeypatch):
    copy = tmp_path / "benchmarks"
    shutil.copytree(benchmarks.BENCHMARK_DIR, copy)
    monkeypatch.setattr(benchmarks, "BENCHMARK_DIR", copy)
    rubric = ROOT / "judges" / "code_change.yaml"
    before = eval_fingerprint(tmp_path, rubric)
    with open(copy / "humaneval.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    assert eval_fingerprint(tmp_path, rubric) != before
