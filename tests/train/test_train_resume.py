"""Crash safety as a user meets it: `harness train` killed with SIGKILL after a checkpoint, then
run again — with changed logging/reporting settings, which must not cost the checkpoint — and
resumed to the same trajectory and whole-run loss as a run never interrupted; then extended by
raising train.max_steps. A change that does alter the weights sets the old work aside, says
why, and keeps it until the new run is published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_cfg

from harness.io import read_json, read_jsonl
from harness.rundir import MANIFEST, TRAIN_LOG
from harness.stages import run_stage
from harness.train import stage as train_stage
from harness.train.checkpoints import checkpoint_step, complete

STEPS = 16
ARGS = ["data.format.max_length=128", "train.batch_size=2", f"train.max_steps={STEPS}",
        "train.save_steps=4", "train.logging_steps=1", "train.warmup=0", "train.report_to=none"]
# operational keys only: none of them changes the trained weights
CHANGED = ["train.logging_steps=3", "train.report_to=tensorboard", "train.save_total_limit=3",
           "train.eval_batch_size=1"]


def command(repo: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "train", "run_name=k", f"data.repo={repo}", *ARGS,
            *extra]


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path, history_repo, harness_cache):
    env = {**os.environ, "HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1"}
    ckpts = tmp_path / "runs" / "k" / "train.partial" / "checkpoints"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command(history_repo), cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        # kill once a checkpoint at step 8 or later is complete (rotation may already have
        # removed checkpoint-8 by the time this loop looks, on a fast machine)
        while not any(checkpoint_step(c) >= 8 and complete(c) for c in ckpts.glob("checkpoint-*")):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    saved = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert saved[-1] < STEPS and not (tmp_path / "runs" / "k" / "train").exists()

    res = subprocess.run(command(history_repo, *CHANGED), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    train = tmp_path / "runs" / "k" / "train"
    manifest = read_json(train / MANIFEST)
    resumed = int(manifest["resumed_from"].split("-")[1])
    assert 8 <= resumed <= saved[-1] and f"resuming from {ckpts / manifest['resumed_from']}" in res.stdout
    assert manifest["global_step"] == STEPS and "cannot be resumed" not in res.stdout
    history = list(read_jsonl(train / TRAIN_LOG))
    losses = {h["step"]: h["loss"] for h in history if "loss" in h}
    assert set(range(1, resumed + 1)) <= set(losses)  # restored from the checkpoint: one per step
    after = sorted(s for s in losses if s > resumed)  # then every 3rd step, every save and the last
    assert after == sorted({s for s in range(resumed + 1, STEPS + 1) if s % 3 == 0 or s % 4 == 0} | {STEPS})
    assert list(train.glob("tensorboard/events.out.tfevents.*"))  # report_to applied on resume

    # the same config never interrupted: the resumed run followed the same trajectory, and the
    # reported loss is over the whole run (transformers' own averages the resumed part only)
    cfg = make_cfg(tmp_path / "straight", history_repo, ARGS, harness_cache)
    straight_summary = run_stage(cfg, "train")
    straight = {h["step"]: h["loss"] for h in read_jsonl(tmp_path / "straight" / "train" / TRAIN_LOG)
                if "loss" in h}
    previous = 0
    for step in sorted(losses):  # each logged loss is the mean over the steps since the last one
        if step > resumed:
            expected = sum(straight[s] for s in range(previous + 1, step + 1)) / (step - previous)
            assert abs(losses[step] - expected) < 1e-4, (step, losses[step], expected)
        previous = step
    assert abs(manifest["train_loss"] - straight_summary["train_loss"]) < 1e-4
    straight_manifest = read_json(tmp_path / "straight" / "train" / MANIFEST)
    assert abs(straight_summary["train_loss"] - straight_manifest["train_loss_this_attempt"]) < 1e-6

    # raising max_steps continues the finished run from its last checkpoint
    more = subprocess.run(command(history_repo, *CHANGED, f"train.max_steps={STEPS + 4}"), cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert more.returncode == 0, more.stdout[-3000:]
    extended = read_json(train / MANIFEST)
    assert extended["resumed_from"] == f"checkpoint-{STEPS}" and extended["global_step"] == STEPS + 4
    assert "continuing the finished run" in more.stdout
    logged = [h["step"] for h in read_jsonl(train / TRAIN_LOG) if "loss" in h]
    assert logged[0] == 1 and logged[-1] == STEPS + 4 and len(logged) == len(set(logged))


WHOLE_RUN_LOG = train_stage.whole_run_log


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt, as at a terminal: a shell's background job (`make test &`,
    nohup) starts with SIGINT ignored, and Python keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_after_checkpoint_4(monkeypatch, lr: float) -> None:
    """Ctrl-C (a real SIGINT to this process) right after the run with learning rate `lr` has
    saved its checkpoint-4, as an impatient user would. Sent from the trainer's own on_save
    callback, so it lands at the same step on every machine (a watcher thread polling the
    checkpoint directory can miss the window on a fast tiny run)."""
    def whole_run_log_then_ctrl_c():
        callback = WHOLE_RUN_LOG()

        class CtrlC(type(callback)):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == 4 and args.learning_rate == lr:
                    os.kill(os.getpid(), signal.SIGINT)

        return CtrlC()

    monkeypatch.setattr(train_stage, "whole_run_log", whole_run_log_then_ctrl_c)


def test_a_change_to_the_weights_sets_old_checkpoints_aside_until_the_new_run_is_published(
        tmp_path, history_repo, harness_cache, caplog, monkeypatch, sigint_raises):
    base = ["data.format.max_length=128", "train.batch_size=2", "train.max_steps=12",
            "train.save_steps=4", "train.warmup=0", "train.report_to=none"]
    run_dir = tmp_path / "run"
    partial, aside = run_dir / "train.partial", run_dir / "train.superseded"
    first = make_cfg(run_dir, history_repo, [*base, "train.lr=5e-3"], harness_cache)
    second = make_cfg(run_dir, history_repo, [*base, "train.lr=1e-3"], harness_cache)

    ctrl_c_after_checkpoint_4(monkeypatch, 5e-3)
    with pytest.raises(KeyboardInterrupt):
        run_stage(first, "train")
    ctrl_c_after_checkpoint_4(monkeypatch, 1e-3)
    with pytest.raises(KeyboardInterrupt):
        run_stage(second, "train")
    monkeypatch.undo()
    assert "changed: train.lr: 0.005 → 0.001" in caplog.text and f"kept in {aside}" in caplog.text
    assert complete(aside / "checkpoints" / "checkpoint-4")  # the first config's work, untouched
    assert read_json(aside / ".fingerprint")["parts"]["train"]["lr"] == 5e-3

    caplog.clear()
    summary = run_stage(first, "train")  # back to the first config: its work is resumed
    assert "resuming the work kept in" in caplog.text
    assert read_json(run_dir / "train" / MANIFEST)["resumed_from"] == "checkpoint-4"
    assert summary["global_step"] == 12 and not aside.exists() and not partial.exists()
