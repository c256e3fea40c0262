"""The run directory's contract: where each stage's output lives, what its files are called,
and how a finished output is published. Stages, the gate, the report, the registry and the
tests name run-dir files through this module only, so a layout change is made here once.

    runs/<run_name>/
      thresholds.json                 gate thresholds, frozen by eval before any model runs
      mine/    records.jsonl negatives.jsonl mine_stats.json preview.md
      format/  dataset/ eval_dataset/ portable/ preview.jsonl dataset_card.json
      train/   adapter/ checkpoints/ tensorboard/ train_log.jsonl manifest.json
      eval/    samples/<task>.<model>.jsonl bigcode/ generation_key.json metrics.json
      gate/    verdict.json
      merged/  (harness merge) merge.json   export/ (harness export) manifest.json
      <stage>/stage.json              written last: the stage finished (fingerprint, summary)

A stage is built in `<stage>.partial/` and published by `publish` when complete, so a reader
never sees half an output.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from harness.io import atomic_write_json, read_json

MODELS = ("base", "candidate")  # the two models every eval task runs, in this order
BASE_NOISE = "base_noise"  # the base model again with another batch size (eval.noise_floor)

STAGE_JSON = "stage.json"  # in every finished stage directory

# mine
RECORDS = "records.jsonl"
NEGATIVES = "negatives.jsonl"
MINE_STATS = "mine_stats.json"
MINE_PREVIEW = "preview.md"
# format
DATASET = "dataset"
EVAL_DATASET = "eval_dataset"
PREVIEW = "preview.jsonl"
DATASET_CARD = "dataset_card.json"
PORTABLE = "portable"  # the same splits as JSONL/Parquet for other trainers (format/portable.py)
# train (and registry merge-adapters, which writes a train output)
ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
TRAIN_LOG = "train_log.jsonl"
MANIFEST = "manifest.json"
# eval
SAMPLES = "samples"
JUDGE_SCORES = "judge_scores"  # samples(JUDGE_SCORES, model): one row per (item, criterion)
JUDGE_PAIRWISE = "judge_pairwise.jsonl"  # in SAMPLES: base vs candidate, both orders
JUDGE_RELIABILITY = "judge_reliability.jsonl"  # in SAMPLES: the judge on known answers
BIGCODE = "bigcode"
GENERATION_KEY = "generation_key.json"
METRICS = "metrics.json"
# gate
VERDICT = "verdict.json"
THRESHOLDS = "thresholds.json"  # beside the stages: frozen by eval, read by the gate
# report
EVIDENCE = "evidence.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# commands outside the pipeline
MERGED = "merged"
MERGE_JSON = "merge.json"
EXPORT = "export"

# The one file each stage's results are read from (sweep metrics such as train.eval_loss).
MAIN_FILE = {"mine": MINE_STATS, "format": DATASET_CARD, "train": MANIFEST, "eval": METRICS,
             "gate": VERDICT}


def stage_dir(run_dir: str | Path, name: str) -> Path:
    """`<run_dir>/<name>/`: a stage's published output (or a command's, e.g. merged/)."""
    return Path(run_dir) / name


def partial_dir(final: Path) -> Path:
    """Where `final` is built before `publish`: `<name>.partial` beside it."""
    return final.with_name(final.name + ".partial")


def superseded_dir(final: Path) -> Path:
    """Where a stage's unfinished work under an older config is kept until the new run publishes."""
    return final.with_name(final.name + ".superseded")


def samples(task: str, model: str) -> PurePosixPath:
    """The per-sample results of `task` for `model` (one of MODELS, or BASE_NOISE), relative
    to the eval stage's directory."""
    return PurePosixPath(SAMPLES, f"{task}.{model}.jsonl")


def rel(stage: str, *parts: str | PurePosixPath) -> str:
    """A run-dir-relative path as the report's evidence names its inputs: `eval/metrics.json`."""
    return str(PurePosixPath(stage, *parts))


def is_finished(path: Path) -> bool:
    """Whether `path` holds a finished stage output (its stage.json is written last)."""
    return (path / STAGE_JSON).exists()


def read_stage(path: Path) -> dict:
    """A finished stage's record: stage, fingerprint, resume key, seconds, summary."""
    return read_json(path / STAGE_JSON)


def write_stage(path: Path, stage: str, fingerprint: str, summary: dict, *,
                seconds: float = 0.0, resume: str | None = None) -> Path:
    """Mark `path` as a finished `stage` output. `resume` is the key under which its work can be
    continued (harness/stages.py); outputs not produced by the stage runner have none."""
    record = {"stage": stage, "fingerprint": fingerprint, "seconds": seconds, "summary": summary}
    if resume is not None:
        record["resume"] = resume
    return atomic_write_json(path / STAGE_JSON, record)


def publish(partial: Path, final: Path) -> Path:
    """Replace `final` by the complete directory `partial`. The old output is renamed aside
    first and removed after, so at every moment `final` is either the old output or the new
    one, never a mix (a crash in between leaves `.<name>.old`, removed by the next publish)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
