"""Sweeps: every job of a multirun is a complete run, the summary ranks them by the configured
metric, and Optuna optimises that same metric (with a persistent sqlite study) with its trials
sent through submitit's local executor, the SLURM launcher's twin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json
from harness.paths import CONF_DIR
from harness.rundir import MANIFEST, STAGE_JSON, VERDICT
from harness.sweep import metric_value, objective, rank, summarize

QUICK = ["data.format.max_length=128", "train.max_steps=3", "train.batch_size=2",
         "train.report_to=none", "train.warmup=0"]


def env(cache: Path) -> dict:
    return {**os.environ, "HARNESS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def run(cmd: list[str], cwd: Path, cache: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env(cache), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:]
    return res.stdout


def fake_job(sweep: Path, num: int, overrides: list[str], eval_loss: float | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if eval_loss is not None:
        atomic_write_json(job / "train" / MANIFEST, {"eval_loss": eval_loss, "global_step": 3})


def test_the_summary_ranks_jobs_by_the_metric_and_shows_what_varied(tmp_path):
    for num, (r, loss) in enumerate([(8, 2.5), (16, 1.5), (32, None)]):
        fake_job(tmp_path, num, ["run_name=s", f"train.lora.r={r}"], loss)
    summary = summarize(tmp_path, "train.eval_loss", "minimize", ["train.global_step"])
    assert summary["best"]["job"] == "1" and summary["best"]["overrides"] == "train.lora.r=16"
    assert [r["train.eval_loss"] for r in summary["runs"]] == [2.5, 1.5, None]
    table = (tmp_path / "sweep_summary.md").read_text()
    assert "| 2 | train.lora.r=32 | n/a | n/a |" in table and "job 1 (`train.lora.r=16`) = 1.5" in table
    assert summarize(tmp_path, "train.eval_loss", "maximize")["best"]["job"] == "0"
    assert read_json(tmp_path / "sweep_summary.json")["direction"] == "maximize"
    assert metric_value(tmp_path / "0", "train.global_step") == 3
    assert metric_value(tmp_path / "2", "eval.fim.candidate.exact_match") is None
    with pytest.raises(HarnessError, match="not a number"):
        objective(tmp_path / "2", metric="train.eval_loss")


def fake_verdict(sweep: Path, num: int, decision: str, slack: float) -> None:
    check = {"name": "humaneval", "status": "pass" if slack >= 0 else "fail", "delta": 0.1,
             "ci": [slack, 0.3], "margin": 0.0}
    atomic_write_json(sweep / str(num) / "gate" / VERDICT, {"decision": decision, "checks": [check]})


def test_gated_runs_rank_by_the_gate_first_and_the_metric_breaks_its_ties(tmp_path):
    for num, loss in enumerate([1.0, 3.0, 2.0, 0.5]):
        fake_job(tmp_path, num, ["run_name=s", f"train.lr={num}"], loss)
    fake_verdict(tmp_path, 0, "no-deploy", -0.1)  # the lowest loss, but the gate refused it
    fake_verdict(tmp_path, 1, "deploy", 0.05)
    fake_verdict(tmp_path, 2, "deploy", 0.05)  # as good by the gate, and a lower loss
    summary = summarize(tmp_path, "train.eval_loss", "minimize")  # job 3: not gated
    assert {r["job"]: r["rank"] for r in summary["runs"]} == {"2": 1, "1": 2, "0": 3, "3": 4}
    assert summary["best"]["job"] == "2" and summary["best"]["decision"] == "deploy"
    assert "Best run by the gate (decision, checks passed, weakest slack), then `train.eval_loss`" \
        in (tmp_path / "sweep_summary.md").read_text()
    assert [r["job"] for r in rank([{"job": "0", "value": 2.0}, {"job": "1", "value": 1.0}],
                                   "maximize")] == ["0", "1"]  # nothing gated: the metric alone


def test_a_train_multirun_trains_every_point_and_writes_a_summary(tmp_path, history_repo,
                                                                 harness_cache):
    out = run([sys.executable, "-m", "harness.cli", "train", "-m", "run_name=sw",
               f"data.repo={history_repo}", *QUICK, "train.lora.r=4,8"], tmp_path, harness_cache)
    sweep = tmp_path / "runs" / "sw"
    losses = {n: read_json(sweep / n / "train" / MANIFEST)["eval_loss"] for n in ("0", "1")}
    summary = read_json(sweep / "sweep_summary.json")
    assert summary["best"]["job"] == min(losses, key=losses.get)
    assert [r["overrides"] for r in summary["runs"]] == ["train.lora.r=4", "train.lora.r=8"]
    assert "Best run by `train.eval_loss` (minimize)" in out
    for job in ("0", "1"):  # each job ran (or restored) its own upstream stages
        assert (sweep / job / "mine" / STAGE_JSON).exists() and (sweep / job / "format").exists()
    assert "format: restored from the stage cache" in out


def test_optuna_on_the_local_submitit_launcher_with_a_persistent_sqlite_study(tmp_path, history_repo,
                                                                            harness_cache):
    import optuna

    db = f"sqlite:///{tmp_path / 'study.db'}"
    run([sys.executable, "-m", "harness.cli", "train", "-m", "hydra/sweeper=tune",
         "hydra/launcher=local", "run_name=opt",
         f"data.repo={history_repo}", *QUICK, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
         f"hydra.sweeper.storage={db}", "hydra.sweeper.study_name=opt"], tmp_path, harness_cache)
    sweep = tmp_path / "runs" / "opt"
    assert list((sweep / ".submitit").iterdir())  # both trials ran as submitit jobs
    study = optuna.load_study(study_name="opt", storage=db)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for trial, job in zip(study.trials, ("0", "1"), strict=True):
        manifest = read_json(sweep / job / "train" / MANIFEST)
        assert trial.value == manifest["eval_loss"]  # the objective is the summary metric
        assert manifest["config"]["train"]["lora"]["r"] == trial.params["train.lora.r"]
    assert read_json(sweep / "sweep_summary.json")["best"]["value"] == study.best_value


def test_the_slurm_launcher_config_is_submitit_with_one_gpu_per_job():
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.partition == "gpu" and launcher.timeout_min == 720
