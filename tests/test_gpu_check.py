"""bench/gpu_check.py's CPU dry run: every step of the GPU check (model from the Qwen shapes,
hf LoRA and QLoRA training, the memory plan beside the measured peak, batched eval generation
for base and candidate, sandbox scoring, the table) on tiny shapes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_dry_run_exercises_the_whole_check(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {r["run"]: r for r in results["rows"]}
    for name in ("hf LoRA", "hf QLoRA"):
        r = runs[name]
        assert r["steps"] == 2 and math.isfinite(r["last_loss"]) and r["tokens_per_s"] > 0
        # on a CPU the peak above the loaded model can be 0 (pages already held); it is measured
        assert r["peak_mb"] >= 0 and r["plan_mb"] > 0  # beside the planned figure
    for label in ("base", "candidate"):
        r = runs[f"eval {label}"]
        assert r["device"] == "cpu" and r["samples"] == 3 and r["samples_per_s"] > 0
    assert "needs a CUDA GPU" in runs["unsloth LoRA"]["note"]
    table = (tmp_path / "table.md").read_text()
    assert table in capsys.readouterr().out and "| hf QLoRA |" in table


def test_without_a_gpu_the_real_check_refuses_to_start(gpu_check, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gpu_check.main(["--part", "hf", "--out", str(tmp_path)]) == 2


def test_backends_agree_when_their_losses_are_within_the_stated_tolerance(gpu_check):
    hf = {"last_loss": 10.0}
    assert gpu_check.loss_agreement(hf, {"last_loss": 10.1})["agree"]
    assert not gpu_check.loss_agreement(hf, {"last_loss": 10.5})["agree"]
