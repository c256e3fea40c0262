"""File helpers every stage uses: atomic writes, JSONL, content hashes, and the disk-full error.

Every output is written to a temporary file in the same directory and renamed into place,
so a crash never leaves a half-written file behind. `tempfile` creates its files 0600 and its
directories 0700 (right for secrets, wrong for reports and a team registry), so the helpers
here give them the mode a plain `open` would: 0666/0777 less the user's umask.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc), since a
    set-and-restore would race with other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """`tempfile.mkdtemp` in `parent`, with the mode `mkdir` would give (not 0700)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


@contextlib.contextmanager
def built_dir(target: Path) -> Iterator[Path]:
    """A temporary directory beside `target` to build a cache entry in, renamed into place
    when the block finishes (a process that lost the race drops its own identical copy) and
    removed when it fails, so a crash never leaves a half-built entry at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.")
    try:
        yield tmp
        respect_umask(tmp)  # safetensors writes its files 0600
        try:
            tmp.rename(target)
        except OSError:  # another process built it first; its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def respect_umask(root: str | Path) -> None:
    """Give every file under `root` the mode a plain `open` would (0666 less the umask): some
    writers (safetensors) create their files 0600, which a team registry cannot read."""
    mode = 0o666 & ~umask()
    root = Path(root)
    for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
        if p.is_file() and not p.is_symlink():
            os.chmod(p, mode | (p.stat().st_mode & 0o111 & ~umask()))


def link_or_copy(src: str, dst: str) -> None:
    """`shutil.copytree`'s copy function for trees whose files are never rewritten in place
    (stage cache, checkpoints): a hard link where the filesystem allows, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def free_bytes(path: str | Path) -> int:
    """Free space on the filesystem of `path` (or of its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def disk_full_error(path: str | Path, needed: int | None, at_least: bool = False) -> HarnessError:
    """The error for a write to `path` that ran out of space, with what it needed (exactly, or
    a lower bound) and what is free, so the user knows where to make room and how much."""
    return HarnessError(
        f"no space left on the device holding {path}: the write needed "
        f"{'at least ' if at_least and needed is not None else ''}{_size(needed)}, "
        f"{_size(free_bytes(path))} is free there. Nothing was published; what finished is "
        "kept. Fix: free space on that filesystem (or point runs/, cache_dir or report_dir at "
        "another), then run the same command again."
    )


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a write that ran out of space.
    torch and safetensors re-raise ENOSPC as RuntimeError text, so the text is checked too."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        text = str(exc)
        if "No space left on device" in text or "StorageFull" in text or "Disk quota" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temp file + rename (atomic on POSIX), with the user's
    umask; a full disk raises a HarnessError naming the path and the space needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    data = text.encode("utf-8")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full_error(path, len(data)) from e
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def jsonl_line(row: dict) -> str:
    """One row as `write_jsonl` writes it (for callers that encode rows ahead of writing)."""
    return json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)


def write_jsonl(path: str | Path, rows: Iterable[dict | str]) -> int:
    """Write rows (dicts, or lines from `jsonl_line`) as JSON lines atomically; returns the
    row count."""
    lines = [r if isinstance(r, str) else jsonl_line(r) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(root: str | Path) -> str:
    """Hash of every file's relative path and content under `root` (order-independent)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """Content hash of a JSON-serialisable object, independent of key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=str))
