"""The memory plan: each term from the model's shapes, the fix it proposes, the estimate against
a measured training step on the CPU, and the README's weekend commands against the plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.train import vram

ROOT = Path(__file__).resolve().parents[2]
QWEN_7B = vram.Shapes.from_config(json.loads((ROOT / "bench/configs/qwen2.5-coder-7b.json").read_text()))
QWEN_1_5B = vram.Shapes.from_config(
    json.loads((ROOT / "bench/configs/qwen2.5-coder-1.5b.json").read_text()))


def test_the_issue_s_logits_figure_and_the_fp32_loss_copies():
    """8 × 2048 tokens × 152k vocabulary: ~5 GB of bf16 logits, 6× that in the loss's fp32
    log-softmax and gradients."""
    s = vram.Setup(batch_size=8, seq_len=2048, dtype_bytes=2)
    assert 8 * 2048 * QWEN_7B.vocab * 2 / 1e9 == pytest.approx(4.98, abs=0.01)
    assert vram.logits_bytes(QWEN_7B, s) == 8 * 2048 * QWEN_7B.vocab * 12
    assert vram.logits_bytes(QWEN_7B, replace(s, backend="unsloth")) == 8 * 2048 * QWEN_7B.vocab * 4


def test_qlora_stores_linear_weights_in_4_bits_and_the_rest_in_fp32_on_the_hf_path():
    lora = vram.weight_bytes(QWEN_7B, vram.Setup(method="lora"))
    qlora = vram.weight_bytes(QWEN_7B, vram.Setup(method="qlora"))
    assert lora == (QWEN_7B.linear_params + QWEN_7B.other_params) * 2
    assert qlora == pytest.approx(QWEN_7B.linear_params * 0.516 + QWEN_7B.other_params * 4, rel=1e-3)
    unsloth = vram.weight_bytes(QWEN_7B, vram.Setup(method="qlora", backend="unsloth"))
    assert unsloth < qlora  # Unsloth keeps embeddings and lm_head in bf16
    # 7.6B parameters in total, as Qwen2.5-Coder-7B's model card says
    assert (QWEN_7B.linear_params + QWEN_7B.other_params) / 1e9 == pytest.approx(7.6, abs=0.1)


def test_checkpointing_and_dropout_change_the_activations():
    s = vram.Setup(batch_size=2, seq_len=1024, checkpointing=False)
    full = vram.activation_bytes(QWEN_1_5B, s)
    ckpt = vram.activation_bytes(QWEN_1_5B, replace(s, checkpointing=True))
    assert ckpt < full / 10
    assert vram.activation_bytes(QWEN_1_5B, replace(s, dropout=0.05)) > full
    # Unsloth offloads the checkpointed layer inputs to host memory
    assert vram.activation_bytes(QWEN_1_5B, replace(s, checkpointing=True, backend="unsloth")) < ckpt


def test_lora_parameters_and_optimizer_states():
    s = vram.Setup(r=16)
    n = vram.lora_params(QWEN_1_5B, s)
    assert n == 28 * 16 * sum(i + o for i, o in QWEN_1_5B.linears().values())
    assert vram.lora_bytes(QWEN_1_5B, s) == n * 16  # fp32 weight, grad, two AdamW states
    assert vram.lora_bytes(QWEN_1_5B, replace(s, optim="paged_adamw_8bit")) == n * 10
    assert vram.lora_bytes(QWEN_1_5B, replace(s, method="qlora")) == n * 8  # TRL: bf16 adapters


def test_a_plan_that_does_not_fit_names_a_setting_that_does():
    s = vram.Setup(method="qlora", batch_size=8, grad_accum=2, seq_len=2048)
    p = vram.plan(QWEN_7B, s)
    with pytest.raises(HarnessError) as err:
        vram.check(p, "a 24 GiB GPU", 24 * vram.GIB)
    fix = vram.fitting_setup(QWEN_7B, s, int(24 * vram.GIB * 0.9))
    assert fix is not None and fix.batch_size * fix.grad_accum == 16  # same effective batch
    assert f"train.batch_size={fix.batch_size} train.grad_accum={fix.grad_accum}" in str(err.value)
    assert "logits" in str(err.value)  # the plan's table is part of the message
    vram.check(vram.plan(QWEN_7B, fix), "a 24 GiB GPU", 24 * vram.GIB)


def test_shapes_come_from_a_transformers_config(tiny_model):
    from transformers import AutoConfig

    shapes = vram.Shapes.from_config(AutoConfig.from_pretrained(tiny_model))
    assert (shapes.hidden, shapes.layers, shapes.vocab) == (128, 2, 4096)
    with pytest.raises(HarnessError, match=r"memory\.check=false"):
        vram.Shapes.from_config({"hidden_size": 8})


MEASURE = """
import json, sys, torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from harness.train import vram

torch.manual_seed(0)
# SmolLM2-135M's block shapes (DESIGN.md 3b), fewer layers and a smaller vocabulary
config = LlamaConfig(vocab_size=8192, hidden_size=576, intermediate_size=1536,
                     num_hidden_layers=3, num_attention_heads=9, num_key_value_heads=3)
ckpt = sys.argv[1] == "ckpt"
setup = vram.Setup(batch_size=2, seq_len=256, dtype_bytes=4, checkpointing=ckpt)
model = get_peft_model(LlamaForCausalLM(config), LoraConfig(
    r=16, lora_dropout=0.0, target_modules=list(vram.LINEAR), task_type="CAUSAL_LM"))
if ckpt:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, config.vocab_size, (setup.batch_size, setup.seq_len))
with vram.PeakMemory() as peak:
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
p = vram.plan(vram.Shapes.from_config(config), setup)
print(json.dumps({"measured": peak.peak, "estimated": p.total - p.terms["weights"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", ["full", "ckpt"])
def test_the_estimate_is_close_to_a_measured_training_step(ckpt):
    """One LoRA step on the CPU, in a fresh process (a used heap would hide allocations): the
    peak memory above the loaded model against the plan's non-weight terms."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("/proc/self/clear_refs is not writable here")
    out = subprocess.run([sys.executable, "-c", MEASURE, ckpt], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["estimated"] == pytest.approx(got["measured"], rel=0.2), got


def weekend_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## A weekend run on a real GPU")[1]
    section = section.split("\n## ")[0]
    return [line for line in re.findall(r"^harness run .*$", section, re.M) if "model=" in line]


def test_the_readme_weekend_commands_fit_a_24_gb_gpu_by_the_plan():
    commands = weekend_commands()
    assert commands, "the README's weekend section has no `harness run ... model=...` command"
    for command in commands:
        args = dict(a.split("=", 1) for a in command.split() if "=" in a)
        model = args["model"].replace("-base", "")
        shapes = vram.Shapes.from_config(
            json.loads((ROOT / f"bench/configs/{model}.json").read_text()))
        s = vram.Setup(method="qlora" if args.get("train") == "qlora" else "lora",
                       batch_size=int(args["train.batch_size"]),
                       seq_len=int(args["data.format.max_length"]), dropout=0.05)
        vram.check(vram.plan(shapes, s), "a 24 GiB GPU", 24 * vram.GIB)
        vram.check_generation(shapes, int(args["eval.batch_size"]), s.seq_len, 2, "a 24 GiB GPU",
                              24 * vram.GIB)


def test_an_eval_batch_that_does_not_fit_names_one_that_does():
    with pytest.raises(HarnessError, match=r"Fix: eval\.batch_size=\d+\.") as err:
        vram.check_generation(QWEN_7B, 32, 2048, 2, "a 24 GiB GPU", 24 * vram.GIB)
    fits = int(re.search(r"batch_size=(\d+)", str(err.value)).group(1))
    vram.check_generation(QWEN_7B, fits, 2048, 2, "a 24 GiB GPU", 24 * vram.GIB)
    with pytest.raises(HarnessError):
        vram.check_generation(QWEN_7B, fits + 1, 2048, 2, "a 24 GiB GPU", 24 * vram.GIB)
