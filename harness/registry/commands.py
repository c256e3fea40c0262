"""`harness promote`, `harness rollback` and `harness registry` over the registry (store.py).

Promotion takes a finished run: its gate verdict must be deploy, or the user forces it and
says why (both recorded). The adapter's checksum is verified against the training manifest
before the copy and again after it, and the version carries an inference manifest (base model
and revision, adapter checksum, tokenizer hash, class and files, FIM tokens, LoRA settings,
the verdict it was promoted on) so a server can check it serves the adapter on the right base.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import read_json, sha256_file, sha256_tree
from harness.registry.store import Registry, check_name, file_hashes
from harness.rundir import ADAPTER, MANIFEST, METRICS, MINE_STATS, STAGE_JSON, VERDICT
from harness.stages import finished_output

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")


def _event(action: str, reason: str | None) -> dict:
    return {"action": action, "reason": reason or None, "user": getpass.getuser(),
            "host": socket.gethostname(), "at": dt.datetime.now(dt.timezone.utc).isoformat()}


def _outputs(run_dir: Path) -> dict[str, Path]:
    return {s: finished_output(run_dir, run_dir.name, s) for s in ("mine", "train", "eval", "gate")}


def _check_same_adapter(out: dict[str, Path], manifest: dict, adapter_sha: str) -> None:
    """The verdict must be about this adapter: training must not have run again after eval."""
    evaluated = (read_json(out["eval"] / METRICS).get("settings") or {}).get("adapter_sha256")
    finished = {s: (out[s] / STAGE_JSON).stat().st_mtime for s in ("train", "eval", "gate")}
    stale = (evaluated is not None and evaluated != adapter_sha) or not (
        finished["train"] <= finished["eval"] <= finished["gate"])
    if stale:
        run = out["train"].parent.name
        raise HarnessError(f"run {run}: the adapter was trained again after it was evaluated, so "
                           f"the verdict is about another adapter. Fix: `harness eval "
                           f"run_name={run}` and `harness gate run_name={run}`, then promote.")
    if adapter_sha != manifest["adapter_sha256"]:
        raise HarnessError(f"{out['train'] / ADAPTER} has sha256 {adapter_sha}, but training "
                           f"wrote {manifest['adapter_sha256']}: the adapter was modified after "
                           f"training. Fix: retrain (harness train) or restore it.")


def inference_manifest(run_dir: Path, out: dict[str, Path], manifest: dict, verdict: dict) -> dict:
    """What a server needs to load this adapter correctly, and where it came from."""
    adapter = out["train"] / ADAPTER
    tok_config = adapter / "tokenizer_config.json"
    lora = read_json(adapter / "adapter_config.json")
    config = manifest.get("config") or {}
    return {
        "base_model": {"ref": manifest["base_model"], "id": manifest.get("base_model_id"),
                       "revision": manifest.get("base_model_revision"),
                       "commit": manifest.get("base_model_commit")},
        "tokenizer": {
            "hash": manifest.get("tokenizer_hash"), "template_hash": manifest.get("template_hash"),
            "class": read_json(tok_config).get("tokenizer_class") if tok_config.exists() else None,
            "transformers": (manifest.get("versions") or {}).get("transformers"),
            "files_sha256": {p.name: sha256_file(p) for p in sorted(adapter.iterdir())
                             if p.name.startswith(TOKENIZER_FILES)}},
        "fim": (config.get("model") or {}).get("fim"),
        "lora": {k: lora.get(k) for k in ("peft_type", "r", "lora_alpha", "target_modules")},
        "training": {k: manifest.get(k) for k in ("backend", "method", "seed", "dataset_hash",
                                                  "global_step", "sources")},
        "versions": manifest.get("versions"),
        "source": {"run": run_dir.name, "run_dir": str(run_dir.resolve()),
                   "manifest_sha256": sha256_file(out["train"] / MANIFEST),
                   "verdict_sha256": sha256_file(out["gate"] / VERDICT),
                   "decision": verdict["decision"],
                   "thresholds_sha256": verdict.get("thresholds_sha256")},
    }


def promote_run(run_dir: str | Path, registry_dir: str | Path, name: str | None = None,
                force: bool = False, reason: str | None = None,
                export: Callable[[], Path] | None = None) -> dict:
    """Promote the adapter of the finished run in `run_dir`; returns the recorded event.
    `export` (called once the run may be promoted) returns its verified export directory,
    which the registry keeps beside the adapter."""
    run_dir = Path(run_dir)
    out = _outputs(run_dir)
    verdict = read_json(out["gate"] / VERDICT)
    decision = verdict["decision"]
    if decision != "deploy":
        why = "; ".join(verdict.get("reasons") or []) or "see its verdict.json"
        if not force:
            raise HarnessError(
                f"run {run_dir.name}: the gate's verdict is {decision} ({why}); only a deploy "
                f"verdict is promoted. Fix: improve the candidate, or override with --force and "
                f"a --reason (registry.force=true registry.reason='…'), which the history keeps.")
        if not (reason or "").strip():
            raise HarnessError("a forced promotion needs a reason, recorded in the history. Fix: "
                               "add --reason '…' (registry.reason='…').")
        log.warning("promoting %s although its verdict is %s: forced (%s)", run_dir.name,
                    decision, reason)
    manifest = read_json(out["train"] / MANIFEST)
    adapter = out["train"] / ADAPTER
    adapter_sha = sha256_tree(adapter)
    _check_same_adapter(out, manifest, adapter_sha)
    name = check_name(name or read_json(out["mine"] / MINE_STATS)["repo"])
    event = {**_event("promote", reason), "run": run_dir.name, "run_dir": str(run_dir.resolve()),
             "decision": decision, "forced": decision != "deploy", "adapter_sha256": adapter_sha}
    inference = inference_manifest(run_dir, out, manifest, verdict)
    exported = export() if export is not None else None
    if exported is not None:
        inference["export"] = export_record(exported)
        event["export_sha256"] = inference["export"]["manifest_sha256"]
    with Registry.open(registry_dir) as reg:
        return reg.promote(name, adapter, adapter_sha, inference, event, exported)


def export_record(export_dir: Path) -> dict:
    """What the registry records of an export: every file's checksum and the verification."""
    manifest = read_json(export_dir / MANIFEST)
    return {"files_sha256": file_hashes(export_dir),
            "manifest_sha256": sha256_file(export_dir / MANIFEST),
            "gguf": {t: {"file": g["file"], "sha256": g["sha256"],
                         "status": g["verification"]["status"]} for t, g in manifest["gguf"].items()}}


def _only_name(reg: Registry, name: str | None) -> str:
    if name:
        return check_name(name)
    names = reg.names()
    if len(names) != 1:
        raise HarnessError(f"the registry {reg.root} holds {names or 'no adapters'}: say which "
                           f"one with registry.name=<name>.")
    return names[0]


def promote(cfg: DictConfig) -> dict:
    """`harness promote <run>`: the run is `cfg.run_dir` (run_name=<run>); with
    export.on_promote=true the run is exported (and verified) first."""
    r = cfg.registry
    export = None
    if cfg.get("export") is not None and cfg.export.on_promote:
        from harness.export.command import run_export

        def export() -> Path:
            run_export(cfg)
            return Path(cfg.run_dir) / "export"
    return promote_run(cfg.run_dir, r.dir, r.name, r.force, r.reason, export)


def rollback(cfg: DictConfig) -> dict:
    """`harness rollback`: the previous live version of `registry.name` becomes live again."""
    with Registry.open(cfg.registry.dir) as reg:
        return reg.rollback(_only_name(reg, cfg.registry.name),
                            _event("rollback", cfg.registry.reason))


def status(cfg: DictConfig, last: int = 10) -> dict:
    """`harness registry`: what is live per name, what it replaced, and the latest history."""
    reg = Registry(cfg.registry.dir)
    names = {}
    for name in reg.names():
        state, live = reg.state(name), reg.live(name)
        info = read_json(live / "inference.json")
        names[name] = {"live": state["live"], "previous": state["previous"],
                       "run": info["source"]["run"], "decision": info["source"]["decision"],
                       "adapter": str((live / "adapter").resolve()),
                       "export": str((live / "export").resolve()) if "export" in info else None}
    lines = [f"registry {reg.root.resolve()}"]
    lines += [f"  {n}: {s['live']} (run {s['run']}, verdict {s['decision']}), previous "
              f"{', '.join(s['previous']) or 'none'}; adapter {s['adapter']}"
              + (f"; export {s['export']}" if s["export"] else "") for n, s in names.items()]
    history = reg.history()[-last:]
    lines += ["history:"] + [
        f"  #{e['seq']} {e['at']} {e['action']} {e['name']} → {e['version']} by {e['user']}"
        + (" FORCED" if e.get("forced") else "") + (f": {e['reason']}" if e.get("reason") else "")
        for e in history]
    print("\n".join(lines))
    return {"names": names, "history": history}


def live_exports(registry_dir: str | Path) -> dict[str, str]:
    """name -> the live version's export directory (versions promoted with an export), each
    file checked against the checksums recorded at promotion."""
    reg = Registry(registry_dir)
    exports = {}
    for name in reg.names():
        live = reg.live(name)
        info = read_json(live / "inference.json")
        if "export" not in info:
            continue
        if file_hashes(live / "export") != info["export"]["files_sha256"]:
            raise HarnessError(f"{live / 'export'} does not match its recorded checksums: the "
                               f"registry was modified by hand. Fix: promote the run again.")
        exports[name] = str((live / "export").resolve())
    return exports


def live_adapters(registry_dir: str | Path, model_ref: str) -> dict[str, str]:
    """name -> live adapter dir, each checked against its inference manifest: the adapter's
    checksum, and that it was trained on the base model the server loads."""
    reg = Registry(registry_dir)
    adapters = {}
    for name in reg.names():
        live = reg.live(name)
        info = read_json(live / "inference.json")
        if sha256_tree(live / "adapter") != info["adapter_sha256"]:
            raise HarnessError(f"{live / 'adapter'} does not match its recorded sha256: the "
                               f"registry was modified by hand. Fix: promote the run again.")
        if info["base_model"]["ref"] != model_ref:
            raise HarnessError(f"adapter {name} ({live}) was trained on {info['base_model']['ref']}"
                               f", but the server loads {model_ref}. Fix: serve that base model "
                               f"(model=… / model.name_or_path=…), or serve another registry.")
        adapters[name] = str((live / "adapter").resolve())
    return adapters
