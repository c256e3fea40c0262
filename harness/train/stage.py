"""The train stage: formatted dataset → LoRA/QLoRA adapter + `manifest.json`.

Every setting comes from `conf/train/` (one config for both backends). Checkpoints go to
`<stage>.partial/checkpoints/`, which survives a crash (see harness/stages.py), so rerunning
the same command resumes from the last complete checkpoint and ends at the same final step.
Logging, saving and reporting settings may change between the attempts (they apply from the
resume on); raising train.max_steps continues a finished run from its last checkpoint (see
harness/stages.py), with the learning-rate schedule recomputed for the new step count from
there on (so an extended run is not bit-identical to one that had the larger max_steps from
the start). TensorBoard logs go to `tensorboard/`; W&B / MLflow when `train.report_to`
names them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import resource
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config_check import TrainSettings, check_section
from harness.io import atomic_write_json, read_json, respect_umask, sha256_tree, write_jsonl
from harness.malloc import keep_freed_memory
from harness.models.load import load_tokenizer, model_id
from harness.rundir import ADAPTER, CHECKPOINTS, DATASET_CARD, MANIFEST, TENSORBOARD, TRAIN_LOG
from harness.stages import require_output
from harness.train.backends import (
    LOADERS,
    compute_dtype,
    cuda_available,
    gradient_checkpointing,
    loaded_base,
    trainer_class,
)
from harness.train.checkpoints import checkpoint_step, last_checkpoint, link_tree
from harness.train.data import load_train
from harness.train.preflight import preflight

log = logging.getLogger(__name__)

VERSIONED = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes",
             "unsloth")


def library_versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), **{n: version(n) for n in VERSIONED}}


def peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process and, on CUDA, peak GPU memory allocated (MB)."""
    import torch

    gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda_available() else None
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_gpu_mb": round(gpu, 1) if gpu is not None else None}


def sft_config(tcfg: DictConfig, run_name: str, out: Path, report_to: list[str]):
    """TRL's training arguments for the train settings, checkpointing into `out`; `run_name`
    names the run in the trackers."""
    from trl import SFTConfig

    t = check_section("train", OmegaConf.to_container(tcfg, resolve=True), TrainSettings)
    gpu = cuda_available()
    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        run_name=str(run_name),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        logging_steps=t.logging_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        # TensorBoard is attached by `build_trainer` with its directory inside the stage output.
        report_to=[r for r in report_to if r != "tensorboard"] or "none",
        max_length=t.max_length,
        packing=t.packing,
        # The dataset is pre-tokenized with `assistant_masks` (format stage); TRL folds the
        # mask into labels, so no re-rendering happens here.
        assistant_only_loss=False,
        use_cpu=not gpu,
        bf16=gpu and str(compute_dtype()) == "torch.bfloat16",
        gradient_checkpointing=gradient_checkpointing(tcfg),
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def whole_run_log():
    """A callback that logs the loss at every save and at the last step, so the logged
    intervals tile the whole run and a resumed run's history (restored from its checkpoint)
    still covers every step; and that applies this attempt's logging/save intervals on a resume
    (transformers keeps the ones stored in the checkpoint's trainer state). Built on first use:
    importing transformers' Trainer pulls in torch, which up-to-date stages never need."""
    from transformers import TrainerCallback

    class WholeRunLog(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            state.compute_steps(args, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True

    return WholeRunLog()


def whole_run_loss(history: list[dict]) -> float | None:
    """Mean training loss over every step of the run, from the logged intervals (each entry's
    `loss` is the mean over the steps since the previous one), so it is right after a resume:
    transformers' own `training_loss` then averages only the resumed part."""
    total, last = 0.0, 0
    for h in history:
        if "loss" in h and h["step"] > last:
            total += h["loss"] * (h["step"] - last)
            last = h["step"]
    return total / last if last else None


def build_trainer(tcfg: DictConfig, model_cfg: DictConfig, formatted: Path, out: Path, *,
                  run_name: str, cache_dir: str | Path):
    """(SFTTrainer, backend, model reference, tokenizer) for the train and model settings, after
    the preflight checks; the model is loaded by the selected backend with the LoRA init seeded.
    `formatted`: the format stage's output to train on; `out`: where checkpoints and TensorBoard
    logs go; `run_name`: the run's name in the trackers; `cache_dir`: the harness cache (the
    tiny or converted model)."""
    # imports unsloth first on that backend
    backend, model_ref, report_to = preflight(tcfg, model_cfg, cache_dir)
    from transformers import set_seed

    SFTTrainer = trainer_class(backend)  # TRL's, or Unsloth's patched subclass
    tokenizer = load_tokenizer(model_ref, model_cfg)
    train, held = load_train(formatted, tcfg.max_length)
    set_seed(tcfg.seed)  # TRL wraps the model in LoRA before the Trainer seeds anything
    model, peft_config = LOADERS[backend](model_ref, tcfg, model_cfg)
    trainer = SFTTrainer(model=model, args=sft_config(tcfg, run_name, out, report_to),
                         train_dataset=train, eval_dataset=held, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[whole_run_log()])
    if "tensorboard" in report_to:
        from transformers.integrations import TensorBoardCallback

        tb = TensorBoardCallback()
        tb.logging_dir = str(out / TENSORBOARD)
        trainer.add_callback(tb)
    return trainer, backend, model_ref, tokenizer


def run(cfg: DictConfig, out: Path) -> dict:
    t0 = time.time()
    formatted = require_output(cfg, "format")
    if not cuda_available():
        keep_freed_memory()
    trainer, backend, model_ref, tokenizer = build_trainer(
        cfg.train, cfg.model, formatted, out, run_name=cfg.run_name, cache_dir=cfg.cache_dir)
    resume = last_checkpoint(out / CHECKPOINTS)
    log.info("training with backend=%s method=%s on %s%s", backend, cfg.train.method,
             "cuda" if cuda_available() else "cpu", f", resuming from {resume}" if resume else "")
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    if not trainer.is_world_process_zero():  # multi-GPU: rank 0 alone writes the outputs
        return {"global_step": trainer.state.global_step, "rank": trainer.args.process_index}
    adapter = out / ADAPTER
    save_adapter(trainer.model, tokenizer, adapter)
    history = trainer.state.log_history
    write_jsonl(out / TRAIN_LOG, history)
    losses = [h["loss"] for h in history if "loss" in h]
    card = read_json(formatted / DATASET_CARD)
    manifest = {
        "base_model": model_ref,
        "base_model_id": model_id(cfg.model),
        "base_model_revision": cfg.model.get("revision"),
        "base_model_commit": getattr(trainer.model.config, "_commit_hash", None),
        **loaded_base(trainer.model),  # what was loaded (Unsloth may substitute its own copy)
        "tokenizer_hash": card["tokenizer_hash"],
        "template_hash": card["template_hash"],
        "chat_template": card.get("chat_template"),
        "dataset_hash": card["content_hash"],
        "eval_dataset_hash": (card.get("eval") or {}).get("content_hash"),
        "backend": backend,
        "method": cfg.train.method,
        "device": "cuda" if cuda_available() else "cpu",
        "seed": cfg.train.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": library_versions(),
        "adapter_sha256": sha256_tree(adapter),
        "global_step": trainer.state.global_step,
        "resumed_from": resume.name if resume else None,
        "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "train_seconds": result.metrics.get("train_runtime"),
        **peak_memory(),
        "train_loss": whole_run_loss(history),
        "train_loss_this_attempt": result.training_loss if resume is None else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "eval_loss": eval_loss,
        "wall_seconds": round(time.time() - t0, 2),
    }
    atomic_write_json(out / MANIFEST, manifest)
    log.info("adapter → %s (%d steps, logged loss %s → %s, eval loss %s)", adapter,
             manifest["global_step"], manifest["first_loss"], manifest["last_loss"], eval_loss)
    return {k: manifest[k] for k in ("backend", "method", "global_step", "train_loss", "first_loss",
                                     "last_loss", "eval_loss", "tokens_seen", "adapter_sha256")}


def save_adapter(model, tokenizer, adapter: Path) -> None:
    """The adapter and tokenizer, byte-identical for identical inputs (PEFT keeps the resolved
    `target_modules` as a set, whose order, hence adapter_config.json, changes with Python's
    hash seed, so it is saved sorted), readable as the user's umask allows."""
    for config in model.peft_config.values():
        if isinstance(config.target_modules, set | frozenset | list | tuple):
            config.target_modules = sorted(config.target_modules)
    model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    respect_umask(adapter)  # safetensors writes its file 0600


# ---- hooks the stage runner calls (declared in harness/pipeline.py) --------------------------------------------------------

def resumable(cfg: DictConfig, partial: Path) -> bool:
    """Whether the checkpoints in `partial` can continue under this config: not when the run
    already went past a lowered train.max_steps (resuming would publish the later weights)."""
    ckpt = last_checkpoint(partial / CHECKPOINTS)
    max_steps = int(cfg.train.max_steps)
    return ckpt is None or max_steps < 1 or checkpoint_step(ckpt) <= max_steps


def adopt(cfg: DictConfig, finished: Path, partial: Path) -> bool:
    """Seed `partial` from a finished run so a raised train.max_steps trains on from its last
    checkpoint: that checkpoint and the TensorBoard files, hard-linked (checkpoints are never
    written in place; the finished output stays intact until the new one replaces it).
    False (nothing adopted) when max_steps was lowered: that run is retrained."""
    ckpt = last_checkpoint(finished / CHECKPOINTS)
    if ckpt is None or checkpoint_step(ckpt) > int(cfg.train.max_steps):
        return False
    link_tree(ckpt, partial / CHECKPOINTS / ckpt.name)
    if (finished / TENSORBOARD).is_dir():
        link_tree(finished / TENSORBOARD, partial / TENSORBOARD)
    return True


def space_needed(partial: Path) -> int | None:
    """A lower bound on what the failed write of a training run needed: the size of its newest
    checkpoint (the torn one, when it was the first), since each checkpoint is as large."""
    ckpts = sorted((partial / CHECKPOINTS).glob("checkpoint-*"), key=checkpoint_step)
    if not ckpts:
        return None
    return sum(f.stat().st_size for f in ckpts[-1].rglob("*") if f.is_file())
