"""The run directory's contract: one publish for every output, a stage record the runner and
the tests write alike, and the per-sample paths eval, gate and report share."""

from __future__ import annotations

from pathlib import Path

from harness.pipeline import PIPELINE, STAGES
from harness.rundir import (
    MODELS,
    is_finished,
    partial_dir,
    publish,
    read_stage,
    rel,
    samples,
    stage_dir,
    write_stage,
)


def test_publish_replaces_the_whole_output_and_leaves_nothing_beside_it(tmp_path: Path):
    final = stage_dir(tmp_path, "train")
    (final / "old-only").mkdir(parents=True)
    partial = partial_dir(final)
    (partial / "adapter").mkdir(parents=True)
    (tmp_path / ".train.old").mkdir()  # left by a publish that crashed between its renames
    assert publish(partial, final) == final
    assert [p.name for p in final.iterdir()] == ["adapter"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_a_stage_is_finished_once_its_record_is_written(tmp_path: Path):
    out = stage_dir(tmp_path, "eval")
    out.mkdir()
    assert not is_finished(out)
    write_stage(out, "eval", "f" * 64, {"humaneval": 0.5}, seconds=1.5, resume="r" * 64)
    assert is_finished(out)
    assert read_stage(out) == {"stage": "eval", "fingerprint": "f" * 64, "seconds": 1.5,
                               "summary": {"humaneval": 0.5}, "resume": "r" * 64}


def test_samples_paths_are_relative_to_the_eval_stage():
    assert [str(samples("humaneval", m)) for m in MODELS] == [
        "samples/humaneval.base.jsonl", "samples/humaneval.candidate.jsonl"]
    assert rel("eval", samples("fim", "base")) == "eval/samples/fim.base.jsonl"  # evidence keys


def test_the_stages_are_declared_once_in_data_flow_order():
    assert STAGES == ("mine", "format", "train", "eval", "gate", "report")
    for stage in PIPELINE:
        assert stage.upstream is None or STAGES.index(stage.upstream) < STAGES.index(stage.name)
        assert callable(stage.load().run)
