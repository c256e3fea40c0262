"""A few LoRA steps on the real offline model (SmolLM2-135M-Instruct) lower its loss on the
repository's held-out code: the loop moves real weights the right way, not only random ones."""

from __future__ import annotations

import os

import pytest
from conftest import make_cfg

from harness.stages import run_stage

pytestmark = pytest.mark.slow
STEPS = ["model=smollm2-135m", "data.format.max_length=128", "data.format.code_share=null",
         "data.format.fim_examples_per_file=2", "train.max_steps=6", "train.batch_size=2",
         "train.lr=1e-3", "train.save_steps=6", "train.logging_steps=4", "train.report_to=none",
         "data.mine.max_changed_lines=5000"]


def held_out_loss(model, dataset) -> float:
    """Mean loss over the supervised tokens of the held-out examples."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for ex in dataset:
            ids = torch.tensor([ex["input_ids"]])
            labels = torch.tensor([[i if m else -100 for i, m in
                                    zip(ex["input_ids"], ex["assistant_masks"], strict=True)]])
            n = int((labels[0, 1:] != -100).sum())
            if n:
                total += float(model(input_ids=ids, labels=labels).loss) * n
                count += n
    return total / count


def test_a_few_steps_lower_the_held_out_loss_on_repo_code(tmp_path, history_repo):
    from datasets import load_from_disk
    from peft import PeftModel

    from harness.models.load import load_model, resolve_model_path

    cache = os.environ.get("HARNESS_CACHE") or str(tmp_path.home() / ".cache" / "harness")
    cfg = make_cfg(tmp_path / "run", history_repo, STEPS, cache)
    summary = run_stage(cfg, "train")
    assert summary["backend"] == "hf"
    held = load_from_disk(str(tmp_path / "run" / "format" / "eval_dataset"))
    held = held.select(range(min(16, len(held))))
    model = load_model(resolve_model_path(cfg.model, cache), cfg.model)
    before = held_out_loss(model, held)
    tuned = PeftModel.from_pretrained(model, str(tmp_path / "run" / "train" / "adapter"))
    after = held_out_loss(tuned, held)
    assert after < before - 0.05, (before, after)
