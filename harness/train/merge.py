"""`harness merge`: fold the trained adapter into the base weights and write a plain
transformers model directory (safetensors + config + generation config + tokenizer with its
chat template) that stock `AutoModelForCausalLM.from_pretrained` and vLLM load.

A QLoRA adapter is merged into the base loaded unquantized in `model.dtype`, the usual
practice: merging into NF4 weights would round the update away.
"""

from __future__ import annotations

import logging
import shutil

from omegaconf import DictConfig

from harness.io import atomic_write_json, read_json, respect_umask, sha256_tree
from harness.rundir import ADAPTER, MANIFEST, MERGE_JSON, MERGED, partial_dir, publish

log = logging.getLogger(__name__)


def _stop_at_end_of_turn(model, tokenizer, token: str | None) -> None:
    """The model was trained to end replies with the template's end-of-turn token; make
    generation stop there (a base model's own eos is often a different token)."""
    if not token:
        return
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid not in eos:
        model.generation_config.eos_token_id = [*eos, tid]


def merge(cfg: DictConfig) -> dict:
    """Write `<run_dir>/merged/` (training first if this run has not trained; nothing when it
    already holds this adapter); returns its summary, also written to `merged/merge.json`."""
    from harness.models.load import load_model, load_tokenizer
    from harness.stages import run_stage, stage_dir

    run_stage(cfg, "train")  # no work when the run's adapter is up to date
    train = stage_dir(cfg, "train")
    manifest = read_json(train / MANIFEST)
    adapter = train / ADAPTER
    out = stage_dir(cfg, MERGED)
    done = out / MERGE_JSON
    if done.exists() and read_json(done)["adapter_sha256"] == manifest["adapter_sha256"]:
        log.info("merged model up to date: %s", out.resolve())
        return {**read_json(done), "path": str(out.resolve())}
    partial = partial_dir(out)
    shutil.rmtree(partial, ignore_errors=True)
    log.info("merging %s into %s", adapter, manifest["base_model"])
    model = load_model(manifest["base_model"], cfg.model, adapter=str(adapter), merge=True)
    tokenizer = load_tokenizer(str(adapter), cfg.model)
    _stop_at_end_of_turn(model, tokenizer, (manifest.get("chat_template") or {}).get("end_of_turn"))
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    respect_umask(partial)  # safetensors writes its files 0600
    summary = {"base_model": manifest["base_model"], "adapter_sha256": manifest["adapter_sha256"],
               "dtype": str(model.dtype).removeprefix("torch."), "merged_sha256": sha256_tree(partial)}
    atomic_write_json(partial / MERGE_JSON, summary)
    publish(partial, out)
    log.info("merged model → %s", out.resolve())
    return {**summary, "path": str(out.resolve())}
