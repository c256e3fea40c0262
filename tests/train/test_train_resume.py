"""Crash safety as a user meets it: `harness train` killed with SIGKILL after a checkpoint, then
the same command again, which resumes from the last complete checkpoint and ends at the same
final step with the same losses as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import make_cfg

from harness.io import read_json, read_jsonl
from harness.stages import run_stage
from harness.train.checkpoints import complete

STEPS = 24
ARGS = ["data.format.max_length=128", "train.batch_size=2", f"train.max_steps={STEPS}",
        "train.save_steps=4", "train.logging_steps=1", "train.warmup=0", "train.report_to=none"]


def command(repo: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "train", "run_name=k", f"data.repo={repo}", *ARGS]


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path, history_repo, harness_cache):
    env = {**os.environ, "HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1"}
    ckpts = tmp_path / "runs" / "k" / "train.partial" / "checkpoints"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command(history_repo), cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while not complete(ckpts / "checkpoint-8"):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    saved = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert saved[-1] < STEPS and not (tmp_path / "runs" / "k" / "train").exists()

    res = subprocess.run(command(history_repo), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    train = tmp_path / "runs" / "k" / "train"
    manifest = read_json(train / "manifest.json")
    resumed = int(manifest["resumed_from"].split("-")[1])
    assert 8 <= resumed <= saved[-1] and f"resuming from {ckpts / manifest['resumed_from']}" in res.stdout
    assert manifest["global_step"] == STEPS
    losses = {h["step"]: h["loss"] for h in read_jsonl(train / "train_log.jsonl") if "loss" in h}
    assert sorted(losses) == list(range(1, STEPS + 1))  # every step once: nothing redone or skipped

    # the same config never interrupted: the resumed run followed the same trajectory
    cfg = make_cfg(tmp_path / "straight", history_repo, ARGS, harness_cache)
    run_stage(cfg, "train")
    straight = {h["step"]: h["loss"] for h in read_jsonl(tmp_path / "straight" / "train" / "train_log.jsonl")
                if "loss" in h}
    assert all(abs(losses[s] - straight[s]) < 1e-4 for s in range(resumed + 1, STEPS + 1))
