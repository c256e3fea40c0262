"""`harness export`: hand the candidate to the engines people run.

From a run (`run_name=R`, its adapter merged by `harness merge`) or the registry's live
version (`export.source=registry`), write into `<run_dir>/export/`:

    merged/            the merged Hugging Face model for vLLM, with README.md (`vllm serve …`)
    gguf/<name>-<type>.gguf   one file per `export.types` (f16, q8_0, q4_0)
    gguf/Modelfile     for `ollama create`, FROM the `export.ollama.type` file
    manifest.json      checksums of every file, the verification of each GGUF against the
                       merged model, and the held-out mini-eval

The work happens in `export.partial/`, renamed into place at the end; a rerun after a crash
reuses every GGUF and verification already finished there for the same merged model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.export import minieval, quant, verify
from harness.export.gguf_file import write_gguf
from harness.export.modelfile import CHECK_CONVERSATIONS, chat_pieces, go_template, modelfile
from harness.export.vocab import read_vocab
from harness.io import atomic_write_json, atomic_write_text, read_json, sha256_file, stable_hash
from harness.rundir import (
    ADAPTER,
    EXPORT,
    MANIFEST,
    MERGE_JSON,
    MERGED,
    partial_dir,
    publish,
    stage_dir,
)

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def files_sha256(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, by relative path."""
    from harness.registry.store import file_hashes

    return {k: v for k, v in file_hashes(root).items() if k != MANIFEST}


def check_files(root: Path, manifest: dict) -> None:
    """Refuse an export whose files are not the ones its manifest lists."""
    found = files_sha256(root)
    if found != manifest["files_sha256"]:
        bad = sorted(set(found.items()) ^ set(manifest["files_sha256"].items()))
        raise HarnessError(f"{root}: files differ from its manifest ({[b[0] for b in bad][:5]}); "
                           f"it was modified after export. Fix: run `harness export` again.")


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the filesystem allows (no second copy of the weights), else copies."""
    def link(s: str, d: str) -> str:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
        return d
    shutil.copytree(src, dst, copy_function=link)


def _adapter_to_export(export_cfg: DictConfig, registry_cfg: DictConfig, run_dir: str | Path,
                       run_name: str) -> dict:
    """Base model, adapter and where they come from (`export.source`): the trained adapter of
    the run in `run_dir` (as it is: an export never retrains) or the registry's live version."""
    if export_cfg.source == "registry":
        from harness.registry.store import Registry

        reg = Registry(registry_cfg.dir)
        names = reg.names()
        name = registry_cfg.name or (names[0] if len(names) == 1 else None)
        live = reg.live(name) if name else None
        if live is None:
            raise HarnessError(f"export.source=registry: the registry {reg.root} has "
                               f"{names or 'no live adapters'}. Fix: registry.name=<name>.")
        info = read_json(live / "inference.json")
        return {"base_model": info["base_model"]["ref"], "adapter": str(live / "adapter"),
                "adapter_sha256": info["adapter_sha256"], "end_of_turn": None,
                "registry": str(reg.root.resolve()), "name": name, "version": info["version"],
                "run": info["source"]["run"]}
    if export_cfg.source != "run":
        raise HarnessError(f"export.source={export_cfg.source!r}: use run or registry.")
    from harness.stages import finished_output

    train = finished_output(run_dir, run_name, "train")
    manifest = read_json(train / MANIFEST)
    return {"base_model": manifest["base_model"], "adapter": str(train / ADAPTER),
            "adapter_sha256": manifest["adapter_sha256"], "run": run_name,
            "end_of_turn": (manifest.get("chat_template") or {}).get("end_of_turn")}


def merged_model(source: dict, model_cfg: DictConfig, work: Path,
                 run_merged: Path | None = None) -> Path:
    """The merged HF directory to export for `source` (what `_adapter_to_export` returned):
    `run_merged` (`harness merge`'s output, given for an export from a run) when it holds this
    adapter, else merged into `work` the same way, with the model settings."""
    from harness.models.load import load_model, load_tokenizer
    from harness.train.merge import _stop_at_end_of_turn

    done = run_merged / MERGE_JSON if run_merged is not None else None
    if (done is not None and done.exists()
            and read_json(done)["adapter_sha256"] == source["adapter_sha256"]):
        return done.parent
    out = work / "merged-model"
    if (out / "source.json").exists() and read_json(out / "source.json") == source:
        return out
    shutil.rmtree(out, ignore_errors=True)
    log.info("merging %s into %s", source["adapter"], source["base_model"])
    model = load_model(source["base_model"], model_cfg, adapter=source["adapter"], merge=True)
    tokenizer = load_tokenizer(source["adapter"], model_cfg)
    _stop_at_end_of_turn(model, tokenizer, source["end_of_turn"])
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    atomic_write_json(out / "source.json", source)
    return out


def vllm_readme(merged: Path, name: str, config: dict) -> tuple[str, str]:
    """README.md for the merged directory, and the `vllm serve` command in it."""
    command = (f"vllm serve {merged.resolve()} --served-model-name {name} "
               f"--max-model-len {config.get('max_position_embeddings', 4096)} "
               f"--dtype {config.get('dtype') or config.get('torch_dtype') or 'auto'}")
    return (f"# {name}: the merged model for vLLM\n\nThe adapter folded into its base model, a "
            f"plain Hugging Face directory (safetensors, config, tokenizer with its chat "
            f"template). Serve it with vLLM's OpenAI-compatible server:\n\n```bash\n{command}\n"
            f"```\n\nThen `POST http://localhost:8000/v1/completions` with "
            f'`{{"model": "{name}", "prompt": "def add(a, b):", "max_tokens": 64}}`.\n'), command


def _ollama(tokenizer, e: DictConfig, name: str, vocab, gguf_name: str,
            fim_names: dict | None) -> tuple[str, dict]:
    """The Modelfile's text and what the manifest says about it."""
    custom = e.ollama.template
    pieces = None if custom or not tokenizer.chat_template else chat_pieces(tokenizer)
    template = str(custom) if custom else go_template(pieces, fim_names)
    stops = [vocab.token("eot"), vocab.token("eos"), *(e.ollama.extra_stops or [])]
    if fim_names:
        stops.append(fim_names.get("end"))
    system = pieces.default_system if pieces else None
    params = OmegaConf.to_container(e.ollama.parameters, resolve=True) if e.ollama.parameters else {}
    text = modelfile(gguf_name, template, stops, system, params)
    how = ("custom" if custom else "raw prompt (the model has no chat template)" if pieces is None
           else f"translated from the chat template, checked on {len(CHECK_CONVERSATIONS)} "
                "conversations")
    return text, {"file": "gguf/Modelfile", "from": gguf_name, "template": how,
                  "fim": bool(fim_names), "stops": [s for s in dict.fromkeys(stops) if s],
                  "system": system, "create": f"cd gguf && ollama create {name} -f Modelfile"}


def _fim_names(tokenizer, vocab) -> dict | None:
    ids = vocab.special_ids
    if not all(k in ids for k in ("fim_pre", "fim_suf", "fim_mid")):
        return None
    end = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else vocab.token("eos")
    return {"prefix": vocab.tokens[ids["fim_pre"]], "suffix": vocab.tokens[ids["fim_suf"]],
            "middle": vocab.tokens[ids["fim_mid"]], "end": end}


def _cached(path: Path, key: str, make) -> dict:
    """A finished step of an interrupted export, reused when made from the same inputs."""
    if path.exists() and read_json(path).get("key") == key:
        return read_json(path)["value"]
    value = make()
    atomic_write_json(path, {"key": key, "value": value})
    return value


def export_name(export_cfg: DictConfig, registry_cfg: DictConfig, run_name: str) -> str:
    """The model's name in file names, Ollama and vLLM: export.name, registry.name, the run."""
    from harness.registry.store import check_name

    return check_name(str(export_cfg.name or registry_cfg.name or run_name))


def run_export(cfg: DictConfig) -> dict:
    """Export, verify and write the manifest; returns the manifest."""
    from harness.models.load import load_model, load_tokenizer

    e = cfg.export
    name = export_name(e, cfg.registry, cfg.run_name)
    types = quant.check_types(list(e.types))
    if e.ollama.type not in types:
        raise HarnessError(f"export.ollama.type={e.ollama.type} is not among export.types={types}.")
    out = stage_dir(cfg.run_dir, EXPORT)
    work = partial_dir(out)
    timings: dict[str, float] = {}
    settings = OmegaConf.to_container(e, resolve=True)
    source = _adapter_to_export(e, cfg.registry, cfg.run_dir, cfg.run_name)
    key = stable_hash({"source": source, "settings": settings, "version": FORMAT_VERSION,
                       "model": OmegaConf.to_container(cfg.model, resolve=True)})
    if (out / MANIFEST).exists() and read_json(out / MANIFEST).get("key") == key:
        log.info("export up to date: %s", out.resolve())
        return read_json(out / MANIFEST)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    merged_dir = merged_model(source, cfg.model, work,
                              stage_dir(cfg.run_dir, MERGED) if e.source == "run" else None)
    timings["merge_s"] = time.perf_counter() - t0
    merged_sha = stable_hash(files_sha256(merged_dir))

    config = json.loads((merged_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(str(merged_dir))
    fim = cfg.model.get("fim")
    fim_cfg = OmegaConf.to_container(fim, resolve=True) if OmegaConf.is_config(fim) else None
    vocab = read_vocab(merged_dir, config["vocab_size"], fim_cfg, source["end_of_turn"])
    fim_names = _fim_names(tokenizer, vocab)

    # the GGUF files depend on the model alone, not on how they are verified
    files_key = stable_hash({"source": source, "name": name, "version": FORMAT_VERSION,
                             "model": OmegaConf.to_container(cfg.model, resolve=True)})
    gguf_dir = work / "gguf"
    gguf_dir.mkdir(exist_ok=True)
    written = {}
    for t in types:
        path = gguf_dir / f"{name}-{t}.gguf"
        start = time.perf_counter()

        def make(t=t, path=path) -> dict:
            return write_gguf(merged_dir, path, t, vocab, name)
        summary = _cached(gguf_dir / f".{t}.json", f"{files_key}:{t}", make)
        if not path.exists() or sha256_file(path) != summary["sha256"]:
            path.unlink(missing_ok=True)
            summary = make()
            atomic_write_json(gguf_dir / f".{t}.json", {"key": f"{files_key}:{t}", "value": summary})
        timings[f"write_{t}_s"] = time.perf_counter() - start
        written[t] = summary

    text, ollama = _ollama(tokenizer, e, name, vocab, f"{name}-{e.ollama.type}.gguf", fim_names)
    atomic_write_text(gguf_dir / "Modelfile", text)

    log.info("verifying the exports against the merged model")
    merged = load_model(str(merged_dir), cfg.model).float()
    eos = merged.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    eos = list(dict.fromkeys([*eos, *(vocab.special_ids[k] for k in ("eot", "eos") if k in vocab.special_ids)]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    checks = Checks(e, cfg.model, cfg.run_dir, tokenizer, merged, vocab, fim_names, eos, pad,
                    "f16" in types)
    results, mini = {}, checks.mini_reference()
    for t in types:
        start = time.perf_counter()
        results[t] = _cached(work / f".verify-{t}.json", f"{key}:{t}:{written[t]['sha256']}",
                             lambda t=t: checks.run(gguf_dir / written[t]["file"], t))
        timings[f"verify_{t}_s"] = time.perf_counter() - start
        if "items" in mini:
            mini[t] = results[t].pop("mini_eval")
        log.info("%s: %s (top-1 agreement %.3f, max logit error %.4g)", t, results[t]["status"],
                 results[t]["vs_merged"]["top1_agreement"], results[t]["vs_merged"]["max_abs_logit_error"])
    verify.require_f16_pass(results, work / ".verify-f16.json")

    readme, command = vllm_readme(out / "merged", name, config)
    if not (work / "merged").exists():
        _link_tree(merged_dir, work / "merged")
        (work / "merged" / "source.json").unlink(missing_ok=True)
    atomic_write_text(work / "merged" / "README.md", readme)
    shutil.rmtree(work / "merged-model", ignore_errors=True)
    for tmp in [*work.glob(".*.json"), *gguf_dir.glob(".*.json")]:
        tmp.unlink()

    for t in types:
        written[t]["verification"] = results[t]
    manifest = {
        "key": key, "format_version": FORMAT_VERSION, "name": name, "source": source,
        "merged": {"path": "merged", "sha256": merged_sha, "dtype": config.get("dtype") or config.get("torch_dtype")},
        "architecture": config.get("architectures"), "tokenizer": {
            "pre": vocab.pre, "tokens": len(vocab.tokens), "merges": len(vocab.merges),
            "special_token_ids": vocab.special_ids,
            "special_tokens": {k: vocab.tokens[i] for k, i in vocab.special_ids.items()},
            "chat_template": bool(vocab.chat_template)},
        "gguf": written, "ollama": ollama, "vllm": {"path": "merged", "command": command},
        "mini_eval": mini, "settings": settings, "seconds": timings,
        "versions": _versions(), "files_sha256": files_sha256(work)}
    atomic_write_json(work / MANIFEST, manifest)
    publish(work, out)
    failed = [t for t in types if results[t]["status"] != "pass"]
    if failed:
        log.warning("exports outside their tolerance or failing: %s (see %s)", failed, out / MANIFEST)
    log.info("export → %s", out.resolve())
    return manifest


class Checks:
    """The merged model, its f16-rounded copy and the prompts, set up once for every file, from
    the export settings (`export.verify`, `export.mini_eval`), the model settings (its FIM
    tokens) and the run in `run_dir` (its held-out files)."""

    def __init__(self, export_cfg: DictConfig, model_cfg: DictConfig, run_dir: str | Path,
                 tokenizer, merged, vocab, fim_names: dict | None, eos: list[int], pad: int,
                 f16: bool):
        self.export_cfg = export_cfg
        self.tokenizer, self.merged, self.eos, self.pad = tokenizer, merged, eos, pad
        self.prompts = verify.fixed_prompts(tokenizer, fim_names)
        self.expected_ids = dict(vocab.special_ids)
        self.settings = OmegaConf.to_container(export_cfg.verify, resolve=True)
        new = int(self.settings["new_tokens"])
        self.reference = verify.Reference.of(merged, self.prompts, new, eos, pad)
        self.reference_f16 = (verify.Reference.of(verify.rounded_to_f16(merged), self.prompts, new,
                                                  eos, pad) if f16 else None)
        m = export_cfg.mini_eval
        self.holes = minieval.held_out(Path(run_dir), m.holes, m.context_lines,
                                       m.max_middle_lines, m.seed)
        self.toks, self.mini_prompts, stops = (minieval.build_prompts(
            tokenizer, model_cfg.get("fim"), self.holes, m.max_prompt_tokens)
            if self.holes else (None, [], []))
        self.stop = list(dict.fromkeys([*eos, *stops]))
        self.mini_texts: list[str] = []

    def mini_reference(self) -> dict:
        """The merged model's own mini-eval scores (the baseline each file is held to)."""
        if not self.holes:
            return {"skipped": "the run has no held-out FIM files (runs/<run>/mine/records.jsonl)"}
        m = self.export_cfg.mini_eval
        outputs = verify.greedy(self.merged, self.mini_prompts, m.max_new_tokens, self.stop, self.pad)
        merged, self.mini_texts = minieval.score(self.tokenizer, self.holes, outputs, self.toks)
        return {"items": len(self.holes), "mode": "fim" if self.toks else "left_to_right",
                "max_new_tokens": m.max_new_tokens,
                "source": "held-out FIM holes of the run's test-split files", "merged": merged}

    def run(self, path: Path, file_type: str) -> dict:
        """Verification and mini-eval of one GGUF file, loaded once."""
        model, gguf_tok = verify.load_gguf(path)
        result = verify.check_export(path, file_type, model, gguf_tok, self.reference,
                                     self.reference_f16, self.prompts, self.expected_ids,
                                     self.settings, self.eos, self.pad)
        if self.holes:
            outs = verify.greedy(model, self.mini_prompts, self.export_cfg.mini_eval.max_new_tokens,
                                 self.stop, self.pad)
            result["mini_eval"], _ = minieval.score(self.tokenizer, self.holes, outs, self.toks,
                                                    self.mini_texts)
        return result


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("gguf", "transformers", "torch", "peft")}


def export(cfg: DictConfig) -> dict:
    """`harness export run_name=R`: the summary printed (paths and the verdict per file)."""
    manifest = run_export(cfg)
    out = stage_dir(cfg.run_dir, EXPORT)
    return {"export": str(out.resolve()), "files": {
        t: {"file": str(out / "gguf" / g["file"]), "status": g["verification"]["status"],
            "top1_agreement": g["verification"]["vs_merged"]["top1_agreement"],
            "max_abs_logit_error": g["verification"]["vs_merged"]["max_abs_logit_error"]}
        for t, g in manifest["gguf"].items()},
        "ollama": manifest["ollama"]["create"], "vllm": manifest["vllm"]["command"],
        "mini_eval": manifest["mini_eval"]}
