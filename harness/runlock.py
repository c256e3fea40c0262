"""One process owns a run directory at a time.

Two commands writing the same `runs/<run_name>/` race on its `.partial` directories (one
crashes, the other publishes the first one's files). Every stage command holds an exclusive
`flock` on `<run_dir>/.lock` while it runs: the kernel drops it when the holder exits however
it dies, so a crash never leaves a run stuck, and there is no stale-pid guessing. The holder
writes who it is into the same file, so the refused process can say whom it waited for.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError

LOCK_NAME = ".lock"
_held: set[Path] = set()  # lock files this process holds (taking one again is a no-op)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_text(lock_path: Path) -> str:
    """Who holds the lock, as its holder recorded it."""
    try:
        who = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "another process (it is still starting and has not said who it is)"
    text = (f"pid {who.get('pid')} on {who.get('host')} (`{who.get('command')}`, since "
            f"{who.get('since')})")
    if who.get("host") == socket.gethostname() and not _alive(int(who.get("pid", 0))):
        text += (" — that pid is gone, so a process it started (a worker) still holds the "
                 "lock; stop it (`fuser " + str(lock_path) + "` lists it)")
    return text


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str) -> Iterator[Path]:
    """Hold `<run_dir>/.lock` for the body, or raise a HarnessError naming the holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = path.resolve()
    if key in _held:  # taken before Hydra started (harness/cli.py), held until the command ends
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(
                f"{run_dir} is in use by {holder_text(path)}. Two commands on one run would "
                "overwrite each other's outputs. Fix: wait for it to finish, or pass another "
                "run_name=..."
            ) from None
        who = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
               "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        data = json.dumps(who).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        _held.add(key)
        try:
            yield path
        finally:
            _held.discard(key)
    finally:
        os.close(fd)  # releases the flock (the file stays: unlinking it would race a waiter)
