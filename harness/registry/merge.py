"""`harness merge-adapters`: combine LoRA adapters trained on one base into a new adapter with
PEFT's `add_weighted_adapter` (linear, TIES, DARE, magnitude pruning, concatenation, SVD).

The result is published as the train output of the run `run_name` (`train/adapter/`,
`manifest.json`) the way the stage runner publishes one (harness/stages.py `finish`), with the mined and formatted data of `registry.merge.data_from`
linked in as its `mine/` and `format/`. So the merged adapter is a candidate like any other:
`harness eval`, `gate`, `report` and `promote` with that run_name take it unchanged (and, as
for any run, stages that already ran are not redone; `harness run` would retrain instead).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.io import atomic_write_json, read_json, respect_umask, sha256_tree, stable_hash
from harness.rundir import (
    ADAPTER,
    DATASET_CARD,
    MANIFEST,
    is_finished,
    partial_dir,
    read_stage,
    stage_dir,
)
from harness.stages import finish

log = logging.getLogger(__name__)
# PEFT's combination types; those using `density` prune each adapter before combining.
METHODS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune", "cat", "svd",
           "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
TOKENIZER_FILES = ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")


def _source(ref: str, runs_root: Path) -> dict:
    """A source adapter: a run (its train/adapter and manifest) or a bare adapter dir."""
    for path in (Path(ref).expanduser(), runs_root / ref):
        train = stage_dir(path, "train")
        if (train / ADAPTER / "adapter_config.json").exists():
            return {"ref": ref, "run": path.resolve(), "adapter": (train / ADAPTER).resolve(),
                    "manifest": read_json(train / MANIFEST)}
        if (path / "adapter_config.json").exists():
            manifest = path.parent / MANIFEST
            return {"ref": ref, "run": None, "adapter": path.resolve(),
                    "manifest": read_json(manifest) if manifest.exists() else None}
    raise HarnessError(f"registry.merge.sources: {ref!r} is neither a run (looked in {runs_root}) "
                       f"nor an adapter directory. Fix: name finished runs or adapter dirs.")


def _base(src: dict) -> str:
    if src["manifest"]:
        return src["manifest"]["base_model"]
    return read_json(src["adapter"] / "adapter_config.json")["base_model_name_or_path"]


def _validate(m: DictConfig, sources: list[dict]) -> list[float]:
    if len(sources) < 2:
        raise HarnessError("registry.merge.sources needs at least two adapters to merge, e.g. "
                           "registry.merge.sources=[run_a,run_b].")
    if m.method not in METHODS:
        raise HarnessError(f"registry.merge.method={m.method!r}: expected one of {METHODS}.")
    if not 0 < float(m.density) <= 1:
        raise HarnessError(f"registry.merge.density={m.density!r}: expected a number in (0, 1].")
    weights = [float(w) for w in m.weights] or [1 / len(sources)] * len(sources)
    if len(weights) != len(sources):
        raise HarnessError(f"registry.merge.weights has {len(weights)} values for "
                           f"{len(sources)} sources: give one per source, or none.")
    bases = {_base(s) for s in sources}
    tokenizers = {s["manifest"].get("tokenizer_hash") for s in sources if s["manifest"]} - {None}
    if len(bases) > 1 or len(tokenizers) > 1:
        raise HarnessError(f"the sources were trained on different base models or tokenizers "
                           f"({sorted(bases)}): only adapters of one base can be merged.")
    return weights


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=link)


def _data(m: DictConfig, sources: list[dict], runs_root: Path, out_run: Path) -> Path:
    """Link mine/ and format/ of the data run into the merged run (kept when identical)."""
    data_run = (_source(str(m.data_from), runs_root)["run"] if m.data_from
                else next((s["run"] for s in sources if s["run"]), None))
    if data_run is None or not is_finished(stage_dir(data_run, "format")):
        raise HarnessError("the merged adapter needs a run's mined and formatted data to be "
                           "evaluated on. Fix: set registry.merge.data_from=<run> (a run that "
                           "ran mine and format).")
    for stage in ("mine", "format"):
        src, dst = stage_dir(data_run, stage), stage_dir(out_run, stage)
        if not is_finished(dst) or read_stage(dst) != read_stage(src):
            _link_tree(src, dst)
    return data_run


def merge_adapters(cfg: DictConfig) -> dict:
    """Merge `registry.merge.sources` into `<run_dir>/train/`; returns the manifest summary."""
    import torch
    from peft import PeftModel

    from harness.models.load import load_model, load_tokenizer, resolve_model_path
    from harness.train.stage import library_versions

    m = cfg.registry.merge
    out_run = Path(cfg.run_dir)
    runs_root = out_run.parent
    sources = [_source(str(ref), runs_root) for ref in m.sources]
    weights = _validate(m, sources)
    base, configured = _base(sources[0]), resolve_model_path(cfg.model, cfg.cache_dir)
    if configured != base:
        raise HarnessError(f"the sources were trained on {base}, but this config's model is "
                           f"{configured}. Fix: pass the model settings they were trained with "
                           f"(model=…).")
    train = stage_dir(out_run, "train")
    if (train / MANIFEST).exists() and "merge" not in read_json(train / MANIFEST):
        raise HarnessError(f"{train} holds a trained adapter; merging would replace it. Fix: "
                           f"choose a new run_name for the merged adapter.")
    data_run = _data(m, sources, runs_root, out_run)
    t0 = time.time()
    model = load_model(base, cfg.model)
    names = [f"source{i}" for i in range(len(sources))]
    model = PeftModel.from_pretrained(model, str(sources[0]["adapter"]), adapter_name=names[0])
    for name, src in zip(names[1:], sources[1:], strict=True):
        model.load_adapter(str(src["adapter"]), adapter_name=name)
    log.info("merging %s with weights %s (%s)", [s["ref"] for s in sources], weights, m.method)
    density = float(m.density) if any(k in m.method for k in ("ties", "dare", "prune")) else None
    with torch.no_grad():  # "default" is the name PEFT saves at the top of the directory
        model.add_weighted_adapter(names, weights, "default", combination_type=m.method,
                                   density=density)
    for name in names:
        model.delete_adapter(name)

    partial = partial_dir(train)
    shutil.rmtree(partial, ignore_errors=True)
    adapter = partial / ADAPTER
    model.save_pretrained(str(adapter))
    tok_files = [p for p in sources[0]["adapter"].iterdir() if p.name.startswith(TOKENIZER_FILES)]
    if tok_files:  # the tokenizer the sources were trained with, as the train stage saves it
        for p in tok_files:
            shutil.copy2(p, adapter / p.name)
    else:
        load_tokenizer(base, cfg.model).save_pretrained(str(adapter))
    respect_umask(adapter)  # safetensors writes its files 0600
    first = sources[0]["manifest"] or {}
    spec = {"method": m.method, "weights": weights, "density": density}
    described = [{"ref": s["ref"], "run": str(s["run"]) if s["run"] else None,
                  "adapter": str(s["adapter"]), "adapter_sha256": sha256_tree(s["adapter"]),
                  "weight": w} for s, w in zip(sources, weights, strict=True)]
    manifest = {
        **{k: first.get(k) for k in ("base_model_id", "base_model_revision", "base_model_commit",
                                     "tokenizer_hash", "template_hash", "chat_template")},
        "base_model": base, "backend": "peft", "method": f"merge:{m.method}",
        "merge": spec, "sources": described, "data_from": str(data_run),
        "dataset_hash": read_json(stage_dir(data_run, "format") / DATASET_CARD).get("content_hash"),
        "seed": cfg.seed, "config": {
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "merge": OmegaConf.to_container(m, resolve=True)},
        "versions": library_versions(), "adapter_sha256": sha256_tree(adapter),
        "wall_seconds": round(time.time() - t0, 2)}
    atomic_write_json(partial / MANIFEST, manifest)
    summary = {k: manifest[k] for k in ("method", "adapter_sha256")}
    finish(partial, "train", stable_hash({"merge": spec, "sources": described}), summary,
           seconds=manifest["wall_seconds"])
    log.info("merged adapter → %s; evaluate it with `harness eval run_name=%s`", train / ADAPTER,
             cfg.run_name)
    return {**summary, "adapter": str((train / ADAPTER).resolve())}
