"""Training the tiny model for real: LoRA through TRL's SFTTrainer on the CPU, the manifest,
TensorBoard logs, seeding, and the settings refused before any model is loaded."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.io import read_json
from harness.rundir import DATASET_CARD, MANIFEST
from harness.stages import run_stage
from harness.train.backends import select_backend
from harness.train.stage import build_trainer

TRAIN = ["data.format.max_length=192", "train.batch_size=4", "train.lr=5e-3", "train.max_steps=12",
         "train.logging_steps=1", "train.save_steps=6", "train.warmup=0", "train.lr_scheduler=constant"]


def trainer_for(cfg, out: Path):
    """`build_trainer` as the train stage calls it: the train and model settings, the run's
    format output, the run's name and the harness cache."""
    return build_trainer(cfg.train, cfg.model, Path(cfg.run_dir) / "format", out,
                         run_name=cfg.run_name, cache_dir=cfg.cache_dir)


@pytest.fixture
def formatted(tmp_path, history_repo, harness_cache):
    cfg = make_cfg(tmp_path / "run", history_repo, TRAIN, harness_cache)
    run_stage(cfg, "format")
    return cfg


def test_labels_are_masked_on_every_unsupervised_token(formatted, tmp_path):
    from datasets import load_from_disk

    trainer, backend, _, tokenizer = trainer_for(formatted, tmp_path / "t")
    assert backend == "hf"
    source = load_from_disk(str(tmp_path / "run" / "format" / "dataset"))
    for row, src in zip(trainer.train_dataset, source, strict=True):
        assert row["input_ids"] == src["input_ids"]
        for tok, label, m in zip(row["input_ids"], row["labels"], src["assistant_masks"], strict=True):
            assert label == (tok if m else -100)
    # the commit example with the most supervised tokens (prompts now carry the code changed)
    chat = max((i for i, s in enumerate(source) if s["kind"] == "commit"),
               key=lambda i: sum(source[i]["assistant_masks"]))
    shown = tokenizer.decode([t for t in trainer.train_dataset[chat]["labels"] if t != -100])
    reply = source[chat]["messages"][-1]["content"] + "<|im_end|>"
    assert reply.startswith(shown) and len(shown) > 100  # truncated at max_length, never the prompt


def test_lora_training_lowers_the_loss_and_writes_a_complete_manifest(formatted):
    summary = run_stage(formatted, "train")
    assert summary["global_step"] == 12 and summary["last_loss"] < summary["first_loss"] - 0.5
    train = Path(formatted.run_dir) / "train"
    manifest = read_json(train / MANIFEST)
    card = read_json(Path(formatted.run_dir) / "format" / DATASET_CARD)
    assert manifest["backend"] == "hf" and manifest["method"] == "lora" and manifest["seed"] == 0
    assert manifest["dataset_hash"] == card["content_hash"]
    assert manifest["tokenizer_hash"] == card["tokenizer_hash"]
    assert manifest["template_hash"] == card["template_hash"]
    assert manifest["chat_template"]["source"] == "tokenizer"
    assert manifest["config"]["train"]["lr"] == 5e-3 and manifest["versions"]["trl"]
    assert manifest["tokens_seen"] > 0 and manifest["wall_seconds"] >= manifest["train_seconds"] > 0
    assert manifest["peak_rss_mb"] > 0 and manifest["peak_gpu_mb"] is None and manifest["device"] == "cpu"
    assert isinstance(manifest["eval_loss"], float) and manifest["resumed_from"] is None
    assert len(manifest["adapter_sha256"]) == 64
    from peft import PeftConfig

    adapter = PeftConfig.from_pretrained(str(train / "adapter"))
    assert adapter.base_model_name_or_path == manifest["base_model"]
    linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {m.rsplit(".", 1)[-1] for m in adapter.target_modules} == linear  # all-linear
    assert not list((train.parent / "format").rglob("cache-*"))  # training left format/ as hashed
    events = list((train / "tensorboard").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 1000


def test_the_seed_decides_the_adapter(tmp_path, history_repo, harness_cache):
    def adapter_hash(name: str, seed: int) -> str:
        cfg = make_cfg(tmp_path / name, history_repo, [*TRAIN, "train.max_steps=1", f"train.seed={seed}",
                                                      "train.report_to=none"], harness_cache)
        return run_stage(cfg, "train")["adapter_sha256"]

    first = adapter_hash("a", 0)
    assert adapter_hash("b", 0) == first and adapter_hash("c", 1) != first


def test_a_train_max_length_shorter_than_every_prompt_is_refused_before_loading(
        tmp_path, history_repo, harness_cache):
    # chat + FIM only: left-to-right code examples are supervised from their first token
    cfg = make_cfg(tmp_path / "run", history_repo, [*TRAIN, "data.format.fim_rate=1",
                                                   "train.max_length=8"], harness_cache)
    with pytest.raises(HarnessError, match=r"train\.max_length=8 is shorter than every example"):
        run_stage(cfg, "train")


@pytest.mark.parametrize(("override", "message"), [
    ("train.backend=unsloth", "needs a CUDA GPU"),
    ("train.method=full", "expected one of"),
    ("train.report_to=wandb", "needs the wandb package"),
    ("train.report_to=tensorbored", "expected none or one of"),
])
def test_bad_training_settings_are_refused_before_any_work(tmp_path, harness_cache, override, message):
    cfg = make_cfg(tmp_path / "run", None, [override], harness_cache)
    with pytest.raises(HarnessError, match=message):
        trainer_for(cfg, tmp_path / "out")


def test_auto_picks_hf_without_a_gpu():
    assert select_backend("auto") == "hf"


def test_identical_runs_store_identical_adapter_bytes(tmp_path, history_repo, harness_cache):
    """Two processes with different hash seeds (so sets iterate in different orders) train the
    same config: every file of the adapter directory, hence adapter_sha256, is the same."""
    from harness.io import sha256_file

    def train(name: str, hash_seed: int) -> tuple[str, dict[str, str]]:
        env = {**os.environ, "HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1",
               "PYTHONHASHSEED": str(hash_seed)}
        res = subprocess.run([sys.executable, "-m", "harness.cli", "train", f"run_name={name}",
                              f"data.repo={history_repo}", *TRAIN, "train.max_steps=1",
                              "train.report_to=none"], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:]
        train_dir = tmp_path / "runs" / name / "train"
        files = {str(p.relative_to(train_dir / "adapter")): sha256_file(p)
                 for p in sorted((train_dir / "adapter").rglob("*")) if p.is_file()}
        return read_json(train_dir / MANIFEST)["adapter_sha256"], files

    first, second = train("a", 1), train("b", 2)
    assert first[1] == second[1] and first[0] == second[0]
    # and readable as the umask says (safetensors alone would leave the weights 0600)
    from harness.io import umask

    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "runs" / "a" / "train").rglob("*")
             if p.is_file() and "checkpoints" not in p.parts}
    assert set(modes.values()) == {0o666 & ~umask()}, modes


def test_a_full_disk_during_training_names_the_path_and_the_space(tmp_path, history_repo, harness_cache):
    """runs/ on a real 16 MiB filesystem, enough for the start-up disk check; once training has
    begun another process fills it (as a neighbour job would). The command ends with exit 2,
    the path and the space, not a traceback; the finished stages and the partial stay."""
    from test_io import run_on_small_tmpfs

    train = [sys.executable, "-m", "harness.cli", "train", "run_name=full",
             f"data.repo={history_repo}", *TRAIN, "train.max_steps=6", "train.save_steps=2",
             "train.report_to=none"]
    fill = ("(while [ ! -d runs/full/train.partial ]; do sleep 0.02; done; "
            "cat /dev/zero > runs/filler 2>/dev/null) &")
    script = (f"{fill} HARNESS_CACHE={shlex.quote(str(harness_cache))} {shlex.join(train)}; rc=$?; "
              "wait; ls runs/full; exit $rc")
    res = run_on_small_tmpfs(tmp_path / "work" / "runs", 16 * 1024, "", cwd=tmp_path / "work",
                             argv=["sh", "-c", script])
    assert res.returncode == 2, res.stdout[-3000:]
    assert "Traceback" not in res.stdout, res.stdout[-3000:]
    assert "no space left on the device holding " in res.stdout and "runs/full/train.partial: the write" in res.stdout
    assert "is free there" in res.stdout and "Fix: free space" in res.stdout
    listed = res.stdout.strip().splitlines()[-4:]
    assert {"mine", "format", "train.partial"} <= set(listed) and "train" not in listed
