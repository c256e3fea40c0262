"""The registry on disk: immutable adapter versions, one live pointer per name, an append-only
history, and promotion that a crash cannot leave half-done.

    <registry>/
      history.jsonl              one line per promote / rollback, every name, never rewritten
      .lock                      flock: one writer at a time
      <name>/
        state.json               {"live": version, "previous": [older lives, newest first],
                                  "seq": n, "event": the event that made this state}
        live -> versions/<v>     symlink for people and scripts; state.json is the truth
        versions/<v>/            adapter/ + inference.json, never modified once in place

A promotion stages the new version under a hidden `.partial` name and renames it into place,
then replaces `state.json` atomically: that rename is the commit point. Before it, the old
model is still live (a leftover `.partial` is removed by the next writer); after it, the new
one is, and whatever a crash skipped afterwards (the `live` link, the history line) is redone
by the next `open`, from the event stored in `state.json`. So the history never lacks a
committed change and never records one that did not happen.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError
from harness.io import (
    atomic_write_json,
    atomic_write_text,
    read_json,
    respect_umask,
    sha256_file,
    sha256_tree,
)

log = logging.getLogger(__name__)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> str:
    """A name is a directory name and a model name in requests: keep it plain."""
    if not NAME.fullmatch(name or ""):
        raise HarnessError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-' (it "
                           f"becomes a directory and the `model` field of requests). Fix: set "
                           f"registry.name=<name>.")
    return name


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(src: str, dst: str) -> str:
    return shutil.copy2(src, dst)


class Registry:
    """Open with `Registry.open(root)` (a context manager holding the write lock)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.history_path = self.root / "history.jsonl"

    @classmethod
    @contextlib.contextmanager
    def open(cls, root: str | Path) -> Iterator[Registry]:
        """The registry with its lock held and any crashed operation completed or undone."""
        reg = cls(root)
        reg.root.mkdir(parents=True, exist_ok=True)
        with open(reg.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            reg._reconcile()
            yield reg

    # ---- reading (no lock needed: every file read is replaced atomically) ----

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/state.json"))

    def state(self, name: str) -> dict | None:
        path = self.root / name / "state.json"
        return read_json(path) if path.exists() else None

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / "versions" / version

    def live(self, name: str) -> Path | None:
        """The live version's directory (adapter/ + inference.json), or None."""
        state = self.state(name)
        return self.version_dir(name, state["live"]) if state else None

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        events = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a torn last line never committed
                events.append(json.loads(line))
        return events

    def versions(self, name: str) -> list[str]:
        return sorted(p.name for p in (self.root / name / "versions").glob("v*") if p.is_dir())

    # ---- writing (inside `open`) ----

    def promote(self, name: str, adapter: Path, adapter_sha256: str, inference: dict,
                event: dict, export: Path | None = None) -> dict:
        """Make `adapter` the live version of `name`; the previous live one stays, for rollback.
        `export`: its exported files (GGUF, Modelfile, merged model), kept beside the adapter
        and checked against `inference["export"]["files_sha256"]`.
        Returns the event recorded (empty when that adapter is already live)."""
        check_name(name)
        state = self.state(name)
        version = self._find(name, adapter_sha256)
        if state and version == state["live"]:
            log.info("%s: %s is already live (same adapter sha256); nothing to do", name, version)
            return {}
        if version is None:
            version = self._stage_version(name, adapter, adapter_sha256, inference, export)
        previous = [state["live"], *state["previous"]] if state else []
        return self._apply(name, version, previous, {**event, "version": version,
                                                     "replaced": state["live"] if state else None})

    def rollback(self, name: str, event: dict) -> dict:
        """Make the previous live version live again."""
        state = self.state(name)
        if state is None:
            raise HarnessError(f"nothing to roll back: no adapter named {name!r} was ever promoted "
                               f"in {self.root} (known: {self.names() or 'none'}).")
        if not state["previous"]:
            raise HarnessError(f"{name}: {state['live']} is the first version ever promoted; "
                               f"there is no previous version to roll back to.")
        back, *rest = state["previous"]
        return self._apply(name, back, rest, {**event, "version": back, "replaced": state["live"]})

    def _apply(self, name: str, version: str, previous: list[str], event: dict) -> dict:
        seq = max([e.get("seq", 0) for e in self.history()]
                  + [(self.state(n) or {}).get("seq", 0) for n in self.names()] + [0]) + 1
        event = {**event, "name": name, "seq": seq}
        self._commit(name, {"live": version, "previous": previous, "seq": seq, "event": event})
        self._link(name, version)
        self._log(event)
        log.info("%s: %s is live (was %s); registry %s", name, version, event["replaced"],
                 self.root.resolve())
        return event

    def _find(self, name: str, sha: str) -> str | None:
        for version in self.versions(name):
            info = self.version_dir(name, version) / "inference.json"
            if info.exists() and read_json(info)["adapter_sha256"] == sha:
                return version
        return None

    def _stage_version(self, name: str, adapter: Path, sha: str, inference: dict,
                       export: Path | None = None) -> str:
        """Copy the adapter into a new immutable version, verified against its checksum."""
        versions = self.root / name / "versions"
        existing = [int(v[1:]) for v in self.versions(name) if v[1:].isdigit()]
        version = f"v{max(existing, default=0) + 1:04d}"
        partial = versions / f".{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copytree(adapter, partial / "adapter", copy_function=_copy)
        respect_umask(partial / "adapter")  # a team registry: not the 0600 some writers use
        copied = sha256_tree(partial / "adapter")
        if copied != sha:
            shutil.rmtree(partial)
            raise HarnessError(f"the copy of {adapter} in the registry has sha256 {copied}, "
                               f"expected {sha}: the adapter changed while it was being copied. "
                               f"Nothing was promoted; run the command again.")
        if export is not None:
            shutil.copytree(export, partial / "export", copy_function=_copy)
            respect_umask(partial / "export")
            if file_hashes(partial / "export") != inference["export"]["files_sha256"]:
                shutil.rmtree(partial)
                raise HarnessError(f"the copy of {export} in the registry does not match its "
                                   f"checksums: it changed while being copied. Nothing was "
                                   f"promoted; run the command again.")
        atomic_write_json(partial / "inference.json", {**inference, "name": name,
                                                      "version": version, "adapter_sha256": sha})
        partial.rename(versions / version)
        return version

    def _commit(self, name: str, state: dict) -> None:
        atomic_write_json(self.root / name / "state.json", state)  # the commit point

    def _link(self, name: str, version: str) -> None:
        link = self.root / name / "live"
        tmp = link.with_name(".live.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("versions") / version)
        os.replace(tmp, link)

    def _log(self, event: dict) -> None:
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _reconcile(self) -> None:
        """Finish or undo what a crashed writer left: drop staged versions that were never
        committed and a torn history line; redo the live link and history line of a commit."""
        for partial in self.root.glob("*/versions/.*.partial"):
            shutil.rmtree(partial)
            log.warning("removed %s, left by an interrupted promotion (never live)", partial)
        if self.history_path.exists():
            text = self.history_path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                atomic_write_text(self.history_path, text[: text.rfind("\n") + 1])
        logged = {e.get("seq") for e in self.history()}
        for name in self.names():
            state = self.state(name)
            link = self.root / name / "live"
            if not link.is_symlink() or os.readlink(link) != str(Path("versions") / state["live"]):
                self._link(name, state["live"])
            if state["event"]["seq"] not in logged:
                self._log(state["event"])
                log.warning("%s: recorded %s of %s in the history (the writer stopped after "
                            "committing it)", name, state["event"]["action"], state["live"])
