"""The `harness` command end to end, as a user runs it: real subprocesses, real exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.rundir import EVIDENCE, STAGE_JSON, VERDICT

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    # Hydra logs to stdout and errors to stderr: read them as one stream, like a terminal does.
    return subprocess.run([*HARNESS, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)


@pytest.mark.slow
def test_run_chains_every_stage_on_the_smoke_config(tmp_path, history_repo, harness_cache):
    res = harness(tmp_path, harness_cache, "run", "experiment=smoke", f"data.repo={history_repo}",
                  "run_name=e2e")
    assert res.returncode == 0, res.stdout[-3000:]
    run = tmp_path / "runs" / "e2e"
    assert str(run.resolve()) in res.stdout
    for stage in ("mine", "format", "train", "eval", "gate", "report"):
        assert (run / stage / STAGE_JSON).exists(), stage
    assert not list(run.glob("*.partial"))
    evidence = json.loads((tmp_path / "reports" / "e2e" / EVIDENCE).read_text())
    metrics = evidence["metrics"]
    assert metrics["humaneval"]["base"]["n"] == 4 and metrics["mbpp"]["candidate"]["n"] == 4
    assert metrics["fim"]["base"]["n"] == 6
    judged = metrics["judge"]["candidate"]["criteria"]["convention_adherence"]
    assert judged["n"] == 2 and judged["parse_failure_rate"] == 0.0  # guided choice always parses
    verdict = json.loads((run / "gate" / VERDICT).read_text())
    assert {c["name"] for c in verdict["checks"]} == {"forgetting", "forgetting_relative",
                                                   "humaneval", "mbpp", "fim", "convention_adherence"}
    assert evidence["verdict"] == verdict
    report = (tmp_path / "reports" / "e2e" / "report.md").read_text()
    assert f"**{verdict['decision'].upper()}**" in report and "| humaneval |" in report

    # every stage is up to date: a rerun does no work; `harness gate` exits with the decision
    again = harness(tmp_path, harness_cache, "run", "experiment=smoke", f"data.repo={history_repo}",
                    "run_name=e2e")
    assert again.returncode == 0 and again.stdout.count("up to date, skipped") == 6
    gate = harness(tmp_path, harness_cache, "gate", "experiment=smoke", "run_name=e2e")
    assert gate.returncode == {"deploy": 0, "no-deploy": 3, "inconclusive": 4}[verdict["decision"]]


def test_a_path_that_is_not_a_repository_fails_cleanly(tmp_path, harness_cache):
    (tmp_path / "plain").mkdir()
    res = harness(tmp_path, harness_cache, "mine", f"data.repo={tmp_path / 'plain'}", "run_name=x")
    assert res.returncode == 2
    assert "is not a git repository" in res.stdout and "Traceback" not in res.stdout
    assert not (tmp_path / "runs" / "x" / "mine").exists()


def test_an_unknown_config_key_is_refused(tmp_path, harness_cache):
    res = harness(tmp_path, harness_cache, "mine", "train.no_such_key=1")
    assert res.returncode != 0 and "no_such_key" in res.stdout


def test_a_missing_model_path_fails_before_any_work(tmp_path, history_repo, harness_cache):
    res = harness(tmp_path, harness_cache, "run", f"data.repo={history_repo}", "run_name=m",
                  f"model.name_or_path={tmp_path / 'no-model'}")
    assert res.returncode == 2 and "no model there" in res.stdout
    # the run preflight checks the model before the first stage: not even mining ran
    assert not (tmp_path / "runs" / "m" / "mine").exists() and not (tmp_path / "runs" / "m" / "format").exists()


def test_a_stage_runs_its_missing_inputs_first(tmp_path, history_repo, harness_cache):
    res = harness(tmp_path, harness_cache, "format", "run_name=alone", f"data.repo={history_repo}")
    assert res.returncode == 0 and "needs 'mine', which has not run" in res.stdout
    assert (tmp_path / "runs" / "alone" / "mine" / STAGE_JSON).exists()
    # another run with the same inputs restores both stages from the stage cache
    res = harness(tmp_path, harness_cache, "format", "run_name=again", f"data.repo={history_repo}")
    assert res.stdout.count("restored from the stage cache") == 2


def test_help_lists_the_commands():
    res = subprocess.run([*HARNESS, "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "harness run experiment=smoke" in res.stdout


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "a/b", "..", ".hidden", "ok,../x"])
def test_a_run_name_that_is_not_a_plain_name_is_refused_before_anything_is_written(tmp_path, harness_cache, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    res = harness(work, harness_cache, "gate", f"run_name={name}")
    assert res.returncode == 2 and "is not a plain name" in res.stdout and "Traceback" not in res.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]  # no runs/ anywhere


def test_a_second_command_on_a_busy_run_is_refused_naming_the_holder(tmp_path, harness_cache):
    from harness.runlock import run_lock

    run = tmp_path / "runs" / "busy"
    saved = run / ".hydra" / "overrides.yaml"  # what the holder's Hydra saved of its command
    saved.parent.mkdir(parents=True)
    saved.write_text("- run_name=busy\n")
    with run_lock(run, "harness run run_name=busy"):
        res = harness(tmp_path, harness_cache, "train", "run_name=busy", "train.lr=1e-3")
    assert res.returncode == 2 and "Traceback" not in res.stdout
    assert f"in use by pid {os.getpid()}" in res.stdout and "`harness run run_name=busy`" in res.stdout
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".lock"]  # no stage, no log
    assert saved.read_text() == "- run_name=busy\n"  # refused before Hydra wrote anything


def test_a_run_name_from_the_config_is_locked_once_composed(tmp_path, harness_cache):
    from harness.runlock import run_lock

    # experiment=smoke names no run: the lock is taken by dispatch, on the composed run_dir
    with run_lock(tmp_path / "elsewhere", "harness eval run_name=x"):
        res = harness(tmp_path, harness_cache, "gate", f"run_dir={tmp_path / 'elsewhere'}")
    assert res.returncode == 2 and f"{tmp_path / 'elsewhere'} is in use by pid {os.getpid()}" in res.stdout


def test_a_log_file_that_cannot_be_written_costs_one_line_not_a_traceback_per_record(capsys):
    """/dev/full fails every write with ENOSPC, as a run directory on a full disk does."""
    from harness.cli import keep_logging_when_log_files_fail

    root = logging.getLogger()
    handler = logging.FileHandler("/dev/full")
    root.addHandler(handler)
    try:
        keep_logging_when_log_files_fail()
        for _ in range(3):
            logging.getLogger("harness.test").error("no space left")
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("cannot write the log file /dev/full") == 1
    assert handler not in root.handlers
