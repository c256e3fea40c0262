"""Training backends: Unsloth is imported before transformers/TRL/PEFT on its path and never on
the default one, its preset takes its fast path, and what was actually loaded is recorded.

Unsloth itself imports only with a CUDA GPU, so the import-order tests put a stand-in
`unsloth` package on the path that records which of transformers, trl and peft were already
imported when it was, exactly the check Unsloth makes itself (unsloth/_gpu_init.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.train import backends

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """import sys
ALREADY_IMPORTED = [m for m in ("trl", "transformers", "peft") if m in sys.modules]
"""


def run_with_stand_in(tmp_path: Path, cache: Path, backend: str) -> dict:
    """`check_run` as `harness train` calls it first, in a fresh interpreter, with CUDA
    reported present; what was imported, and when."""
    (tmp_path / "standin" / "unsloth").mkdir(parents=True, exist_ok=True)
    (tmp_path / "standin" / "unsloth" / "__init__.py").write_text(STAND_IN)
    script = f"""
import json, sys
sys.path.insert(0, {str(tmp_path / "standin")!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
import harness.cli, harness.stages  # what the command has imported before its preflight
from harness import preflight
from harness.train import backends
backends.cuda_available = lambda: True
from conftest import make_cfg
cfg = make_cfg({str(tmp_path / "run")!r}, None, ["train.backend={backend}"], {str(cache)!r})
try:
    preflight.check_run(cfg, ["train"])
    error = None
except Exception as e:  # only the import order matters here; CUDA is not really there
    error = type(e).__name__
import harness.train.stage, harness.eval.stage, harness.eval.engines.pool  # noqa: F401
unsloth = sys.modules.get("unsloth")
print(json.dumps({{"unsloth": unsloth is not None, "error": error,
                  "before_unsloth": getattr(unsloth, "ALREADY_IMPORTED", None)}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_unsloth_is_imported_before_transformers_trl_and_peft(tmp_path, harness_cache, tiny_model):
    got = run_with_stand_in(tmp_path, harness_cache, "unsloth")
    assert got["unsloth"] and got["before_unsloth"] == [], got


@pytest.mark.slow
def test_the_default_path_never_imports_unsloth(tmp_path, harness_cache, tiny_model):
    got = run_with_stand_in(tmp_path, harness_cache, "hf")
    assert got == {"unsloth": False, "error": None, "before_unsloth": None}, got


def test_the_unsloth_preset_takes_its_fast_path(tmp_path, caplog):
    preset = make_cfg(tmp_path, overrides=["train=unsloth"]).train
    assert preset.backend == "unsloth"
    kwargs = backends.unsloth_lora_kwargs(preset)
    assert kwargs["lora_dropout"] == 0 and kwargs["bias"] == "none"
    assert kwargs["target_modules"] == backends.LINEAR_MODULES  # all-linear, spelled out
    assert kwargs["random_state"] == preset.seed
    with caplog.at_level(logging.WARNING):
        backends.unsloth_lora_kwargs(make_cfg(tmp_path, overrides=["train.backend=unsloth"]).train)
    assert "fast LoRA kernels need dropout 0" in caplog.text  # lora.yaml's 0.05 would be slow


def test_unsloth_without_a_gpu_is_refused_with_the_fix():
    if backends.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(HarnessError, match=r"train\.backend=hf"):
        backends.select_backend("unsloth")
    assert backends.select_backend("auto") == "hf"


def test_the_loaded_repo_and_the_trainer_class(tiny_model):
    from trl import SFTTrainer

    from harness.models.load import load_model

    assert backends.loaded_base(load_model(tiny_model)) == {"loaded_repo": tiny_model,
                                                            "loaded_commit": None}
    assert backends.trainer_class("hf") is SFTTrainer


def test_qlora_weights_are_placed_on_this_process_s_gpu():
    """The Trainer never moves a bitsandbytes model, so the loader must place it."""
    assert backends.hf_placement(cuda=False) == {}
    assert backends.hf_placement(cuda=True, local_rank=3) == {"device_map": {"": 3}}
