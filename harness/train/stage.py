"""The train stage: formatted dataset → LoRA adapter + `manifest.json`.

Checkpoints go to `<stage>.partial/checkpoints/`, which survives a crash (see
harness/stages.py), so rerunning the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.io import atomic_write_json, read_json, sha256_tree, write_jsonl
from harness.models.load import load_tokenizer, resolve_model_path
from harness.stages import require_output
from harness.train.backends import LOADERS, cuda_available, select_backend

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


def sft_config(cfg: DictConfig, out: Path):
    from trl import SFTConfig

    t = cfg.train
    gpu = cuda_available()
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        logging_steps=t.logging_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        report_to=[] if t.report_to in (None, "none") else [t.report_to],
        max_length=t.max_length,
        packing=t.packing,
        # The dataset is pre-tokenized with `assistant_masks` (format stage); TRL folds the
        # mask into labels, so no re-rendering happens here.
        assistant_only_loss=False,
        use_cpu=not gpu,
        bf16=gpu,
        gradient_checkpointing=gpu,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def build_trainer(cfg: DictConfig, out: Path):
    """The SFTTrainer for this config, model loaded by the selected backend."""
    from datasets import load_from_disk
    from trl import SFTTrainer

    backend = select_backend(cfg.train.backend)
    model_ref = resolve_model_path(cfg.model, cfg.cache_dir)
    tokenizer = load_tokenizer(model_ref, cfg.model)
    dataset = load_from_disk(str(require_output(cfg, "format") / "dataset"))
    dataset = dataset.select_columns(["input_ids", "assistant_masks"])
    model, peft_config = LOADERS[backend](model_ref, cfg)
    trainer = SFTTrainer(model=model, args=sft_config(cfg, out), train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    return trainer, backend, model_ref, tokenizer


def run(cfg: DictConfig, out: Path) -> dict:
    t0 = time.time()
    trainer, backend, model_ref, tokenizer = build_trainer(cfg, out)
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if ckpts:
        log.info("resuming from %s", ckpts[-1])
    log.info("training with backend=%s method=%s on %s", backend, cfg.train.method,
             "cuda" if cuda_available() else "cpu")
    result = trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
    adapter = out / "adapter"
    trainer.model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    history = trainer.state.log_history
    write_jsonl(out / "train_log.jsonl", history)
    losses = [h["loss"] for h in history if "loss" in h]
    card = read_json(require_output(cfg, "format") / "dataset_card.json")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    manifest = {
        "base_model": model_ref,
        "base_model_revision": cfg.model.get("revision"),
        "tokenizer_hash": card["tokenizer_hash"],
        "template_hash": card["template_hash"],
        "dataset_hash": card["content_hash"],
        "backend": backend,
        "method": cfg.train.method,
        "seed": cfg.train.seed,
        "config": resolved,
        "versions": library_versions(),
        "adapter_sha256": sha256_tree(adapter),
        "global_step": trainer.state.global_step,
        "resumed_from": ckpts[-1].name if ckpts else None,
        "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "wall_seconds": round(time.time() - t0, 2),
    }
    atomic_write_json(out / "manifest.json", manifest)
    log.info("adapter → %s (loss %.3f → %.3f, %d steps)", adapter, manifest["first_loss"] or 0,
             manifest["last_loss"] or 0, manifest["global_step"])
    return {k: manifest[k] for k in ("backend", "method", "global_step", "first_loss",
                                     "last_loss", "tokens_seen", "adapter_sha256")}
