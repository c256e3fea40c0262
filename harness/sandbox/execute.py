"""Run untrusted, model-generated Python programs and decide pass/fail.

Each program runs in a fresh dir (its cwd, HOME and TMPDIR), in its own session, under
rlimits (address space, CPU, file size, processes, no core dumps), with a scrubbed environment
(no API keys) and a wall-clock timeout that SIGKILLs its whole process group; whatever it left
running is killed before the next sample. Programs are forked from a per-worker fork server
that starts once inside the isolation (``harness/sandbox/forkserver.py``: no interpreter start
per sample). As root the program runs as uid 65534 (nobody), because RLIMIT_NPROC is not
enforced for root. The network is cut by the strongest mechanism that works here, detected
once per process (``Sandbox.mode``):

- "bwrap": bubblewrap with net, pid, ipc and uts namespaces unshared and a minimal, read-only
  view of the filesystem (``_bwrap_view``): /usr, /lib*, /etc/ld.so* and the interpreter's own
  install dirs, nothing else of the host; /tmp, /run, /var and home dirs are empty, the
  samples' files live on a private size-capped tmpfs. No host file, and so no host unix
  socket (network namespaces do not cover those), is reachable. As root bwrap runs
  privileged and setpriv drops to nobody inside; otherwise unprivileged, in a user namespace;
- "unshare": util-linux ``unshare`` (root only) with new net, ipc, uts, mount and pid
  namespaces, the same filesystem view built by a mount script and entered with ``chroot``,
  then ``setpriv`` down to nobody (as root, without setpriv, a chroot does not hold: the view
  is then not counted as a guarantee);
- "rlimits": no network isolation, rlimits only.

Each mode is probed with the interpreter itself: when nobody cannot run it with its own stdlib
(a pyenv Python under /root, mode 0700, and no mount namespace), the program runs as the
current user instead (``Sandbox.user`` is "self"). What that costs is spelled out by
``Sandbox.describe()`` (logged, and written to metrics.json): the guarantees that hold and
those that are missing, e.g. no process-count limit for root.

A sample passes only if the exit code is 0 AND the fork server saw the program's code run to
its end (an end-of-tests handshake with a token drawn only after the tests completed; see
``harness/sandbox/forkserver.py`` for how, and for what stays out of reach in-process): an early
``sys.exit(0)`` or ``os._exit(0)``, a marker read from the source or from memory, or a thread or
atexit handler firing after a failed test never passes.

What a program can carry into stored results is its error text only (stdout is discarded):
the last lines of its stderr, with control characters and the scratch paths removed, secrets
redacted and the size capped (``scrub``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from harness.errors import HarnessError
from harness.sandbox.forkserver import SERVER, ForkServer, ServerError

if TYPE_CHECKING:
    from harness.benchmarks import Problem

MODES = ("bwrap", "unshare", "rlimits")
USERS = ("nobody", "self")
NOBODY = 65534
IS_ROOT = os.geteuid() == 0
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# -I minus -E: -E would make the interpreter ignore PYTHONHASHSEED=0, and string-hash order
# decides some set/dict outputs; the environment is fully ours, so -E protects nothing here.
INTERPRETER = (sys.executable, "-s", "-P") if sys.version_info >= (3, 11) else (sys.executable, "-s")
# What every mode guarantees, and what only some do (see `guarantees`).
ALWAYS = ("rlimits on memory, CPU time and file size", "wall-clock kill of the process group",
          "scrubbed environment", "private temp dir", "end-of-tests handshake",
          "scrubbed, capped error text")
# What bwrap shows of the host (read-only), besides the interpreter's install dirs: symlinks
# (merged /usr) are recreated as symlinks. The dynamic loader needs /etc/ld.so*; alternatives
# are symlinks some /usr/bin tools go through.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache",
                "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
EMPTY_DIRS = ("/tmp", "/var", "/run", "/home", "/root")  # empty and read-only: no host files
ERROR_LINES, ERROR_CHARS = 3, 500  # what a failure stores: its last lines, at most this long
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program: "passed" | "failed" | "timeout" | "error" (the sandbox broke)."""

    status: str
    error: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def guarantees(mode: str, user: str) -> dict[str, bool]:
    """Which isolation properties hold for a (mode, user) pair; ``ALWAYS`` hold in every mode."""
    unprivileged = user == "nobody" or not IS_ROOT
    return {
        "network_isolated": mode in ("bwrap", "unshare"),
        "unprivileged_user": unprivileged,
        "process_limit": unprivileged,  # the kernel exempts root from RLIMIT_NPROC
        "pid_namespace": mode in ("bwrap", "unshare"),
        # no host file or unix socket reachable; as root a chroot would not hold
        "read_only_root": mode == "bwrap" or (mode == "unshare" and unprivileged),
        "host_files_hidden": mode == "bwrap" or (mode == "unshare" and unprivileged),
    }


class Sandbox:
    """Executes programs in isolation; see the module docstring for the guarantees.

    ``mode`` None auto-detects (cached per process); pass "rlimits" etc. only to test a mode.
    ``user`` None picks, by probing, "nobody" when root can drop to it, else "self".
    """

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 1024, workers: int = 2,
                 max_procs: int = 64, max_file_mb: int = 16, scratch_mb: int = 64,
                 mode: str | None = None, user: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.workers = workers
        self.max_procs = max_procs
        self.max_file_mb = max_file_mb
        self.scratch_mb = max(scratch_mb, 2 * max_file_mb)
        if mode not in (None, *MODES):
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if user not in (None, *USERS):
            raise ValueError(f"user must be one of {USERS}, got {user!r}")
        if user is None:
            mode, user = detect(mode)
        self.mode: str = mode or detect(None)[0]
        self.user: str = user
        self._lock = threading.Lock()
        self._arm()

    def _arm(self) -> None:
        self._idle: queue.SimpleQueue[ForkServer] = queue.SimpleQueue()
        self._servers: list[ForkServer] = []
        self._finalizer = weakref.finalize(self, _stop_servers, self._servers,
                                           self.mode == "rlimits")

    @classmethod
    def from_config(cls, s) -> Sandbox:
        """From ``eval.sandbox``: refused if a required guarantee is missing; logs what ran."""
        box = cls(timeout_s=s.timeout_s, memory_mb=s.memory_mb, workers=s.workers, mode=s.mode)
        box.require(list(s.require))
        d = box.describe()
        log.info("sandbox: mode %s as %s (uid %d)%s", d["mode"], d["user"], d["uid"],
                 f"; missing guarantees: {', '.join(d['missing'])}" if d["missing"] else "")
        return box

    @property
    def guarantees(self) -> dict[str, bool]:
        return guarantees(self.mode, self.user)

    def describe(self) -> dict:
        """What ran and what it guarantees, for logs and metrics.json."""
        held = self.guarantees
        return {"mode": self.mode, "user": self.user,
                "uid": NOBODY if self.user == "nobody" else os.getuid(),
                "guarantees": [*ALWAYS, *(k for k, v in held.items() if v)],
                "missing": [k for k, v in held.items() if not v]}

    def require(self, names: list[str]) -> None:
        """Refuse to go on without each named guarantee (``eval.sandbox.require``)."""
        held = self.guarantees
        unknown = sorted(set(names) - set(held))
        if unknown:
            raise HarnessError(f"eval.sandbox.require: unknown guarantees {unknown}; "
                               f"known: {sorted(held)}.")
        missing = [n for n in names if not held[n]]
        if missing:
            raise HarnessError(
                f"the sandbox runs in mode {self.mode!r} as {self.user} here, without {missing}, "
                "which eval.sandbox.require asks for. Fix: install bubblewrap (Debian: apt-get "
                "install bubblewrap; as root for a drop to nobody), or remove them from "
                "eval.sandbox.require.")

    def run(self, program: str) -> ExecResult:
        """Run one program; never raises for anything the program does."""
        start = time.monotonic()
        server = self._checkout()
        try:
            reply = server.run(program.encode("utf-8", "surrogatepass"), self.timeout_s,
                               self._limits())
        except ServerError as e:
            status = "failed" if e.during_job else "error"
            return ExecResult(status, scrub(f"{e}: {e.log.strip()[-ERROR_CHARS:]}", server.base),
                              time.monotonic() - start)
        finally:
            self._idle.put(server)
        duration = time.monotonic() - start
        if reply.code is None:
            return ExecResult("timeout", f"killed after the {self.timeout_s:g}s timeout", duration)
        if reply.code == 0 and reply.ended:
            return ExecResult("passed", "", duration)
        return ExecResult("failed", scrub(_failure_reason(reply.code, reply.stderr), server.base),
                          duration)

    def close(self) -> None:
        """Stop this sandbox's fork servers (also done when it is garbage-collected); a later
        ``run`` starts new ones."""
        self._finalizer()
        self._arm()

    def _checkout(self) -> ForkServer:
        """An idle fork server, or a new one: at most one per concurrent caller."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            base = Path(tempfile.mkdtemp(prefix="harness-sandbox-"))
            if self.mode == "rlimits" and self._drops_root:  # no tmpfs: nobody's scratch on disk
                os.chown(base, NOBODY, NOBODY)
            server = ForkServer(self._command(base), base, self._env(base), self._user_kwargs())
            with self._lock:
                self._servers.append(server)
            return server

    def _env(self, home: Path) -> dict[str, str]:
        return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(home), "TMPDIR": str(home),
                "PYTHONHASHSEED": "0"}

    def _limits(self) -> tuple[int, ...]:
        """(address space, CPU seconds, file size, processes), in the fork server's order."""
        cpu = math.ceil(self.timeout_s) + 1  # backstop if the wall-clock kill never comes
        return (self.memory_mb << 20, cpu, self.max_file_mb << 20, self._nproc_limit())

    def run_many(self, programs: list[str], desc: str = "executing") -> list[ExecResult]:
        """Run programs on ``workers`` threads (each drives its own fork server); order kept."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(tqdm(pool.map(self.run, programs), total=len(programs), desc=desc))

    def self_check(self, problems: list[Problem]) -> dict:
        """Prove the sandbox works here before trusting its scores.

        Every reference must pass (a correct executor reproduces the benchmarks' known counts)
        and every known-bad program must end with its expected status. Raises HarnessError
        naming what went wrong.
        """
        start = time.monotonic()
        probe = self.run(_interpreter_probe())
        results = self.run_many([p.program(p.reference) for p in problems], desc="self-check")
        broken = [f"{p.task_id} ({r.status}: {r.error[-200:]})"
                  for p, r in zip(problems, results, strict=True) if not r.passed]
        canary_set = "OPENAI_API_KEY" not in os.environ
        if canary_set:
            os.environ["OPENAI_API_KEY"] = "sk-harness-sandbox-canary"
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            # Sequential: a fork bomb holding nobody's process quota would starve a neighbour.
            leaks = [f"{name} (expected {want}, got {r.status}: {r.error[-200:]})"
                     for name, program, want in known_bad_programs(self, listener.getsockname()[1])
                     if (r := self.run(program)).status != want]
        finally:
            listener.close()
            if canary_set:
                del os.environ["OPENAI_API_KEY"]
            with contextlib.suppress(OSError):
                os.unlink(HOST_PROBE_FILE)  # only exists if the write guard failed
        total_bad = len(known_bad_programs(self, 0))
        if broken or leaks or not probe.passed:
            raise HarnessError(
                f"Sandbox self-check failed in mode {self.mode!r} (user {self.user}).\n"
                + ("" if probe.passed else f"The child does not run {sys.executable} with its own "
                   f"stdlib ({probe.status}: {probe.error[-300:]})\n")
                + (f"References that did not pass ({len(broken)}/{len(problems)}): "
                   + "; ".join(broken[:10]) + "\n" if broken else "")
                + (f"Known-bad programs not stopped: {'; '.join(leaks)}\n" if leaks else "")
                + "Evaluation scores would be wrong. Check that the interpreter is readable by "
                  "uid 65534 when running as root, and that timeouts/limits suit this machine.")
        return {"mode": self.mode, "user": self.user,
                "references_passed": len(problems) - len(broken), "references_total": len(problems),
                "known_bad_failed": total_bad - len(leaks), "known_bad_total": total_bad,
                "seconds": round(time.monotonic() - start, 2)}

    @property
    def _drops_root(self) -> bool:
        return IS_ROOT and self.user == "nobody"

    def _command(self, base: Path) -> list[str]:
        """The fork server's command line: the isolation tools, then ``python -c SERVER``.

        With a mount namespace, ``base`` gets a private tmpfs (sticky, world-writable, capped
        at ``scratch_mb``) where the server keeps each job's files.
        """
        python = [*INTERPRETER, "-c", SERVER, str(base)]
        drop = self._drops_root and self.mode != "rlimits"  # rlimits mode: Popen(user=...)
        drop_root = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                      "--"] if drop else [])
        scratch = self.scratch_mb << 20
        if self.mode == "bwrap":
            setenv = [x for key, value in self._env(base).items() for x in ("--setenv", key, value)]
            # As root, bwrap runs privileged (kuid 0 would be exempt from RLIMIT_NPROC inside a
            # user namespace), mounts the interpreter visible, then setpriv drops to nobody.
            # The server is the namespace's pid 1: the kernel drops SIGKILL and SIGSTOP sent to
            # it from inside, so a program cannot kill or freeze it; it dies with bwrap.
            unshare = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                        "--unshare-cgroup-try"] if IS_ROOT else ["--unshare-all"])
            return ["bwrap", *unshare, "--as-pid-1", "--die-with-parent", "--new-session",
                    *_bwrap_view(),
                    "--dev", "/dev", "--proc", "/proc",
                    "--perms", "1777", "--size", str(scratch), "--tmpfs", str(base),
                    # read-only /dev too: in a user namespace its tmpfs (/dev/shm) is ours
                    "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", str(base),
                    "--clearenv", *setenv,
                    *(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if drop else []),
                    *drop_root, *python]
        if self.mode == "unshare":  # needs root to unshare, so drop to nobody afterwards
            # the server is the new pid namespace's init, in a chroot of ``_view``
            return ["unshare", "--net", "--ipc", "--uts", "--mount", "--pid", "--fork",
                    "--kill-child", "--propagation", "private", "--", "sh", "-c",
                    _mount_script(base, scratch), "sandbox", *drop_root, *python]
        return python

    def _user_kwargs(self) -> dict:
        if IS_ROOT and self.mode == "rlimits" and self.user == "nobody":
            return {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        return {}

    def _nproc_limit(self) -> int:
        """RLIMIT_NPROC caps all tasks of the child's real uid, not just the child's own: a
        non-root user's shell, editor and this process already count, so the budget is
        ``max_procs`` on top of what that uid runs now."""
        return self.max_procs + _tasks_owned_by(NOBODY if self.user == "nobody" else os.getuid())


_task_counts: dict[int, tuple[float, int]] = {}


def _tasks_owned_by(uid: int) -> int:
    """Tasks (threads included) now running as ``uid``: what RLIMIT_NPROC counts. Rescanned
    at most every half second: the scan costs more than a short sample, and a count that is
    a few tasks stale shifts the budget by as much."""
    at, count = _task_counts.get(uid, (-1.0, 0))
    if time.monotonic() - at > 0.5:
        count = 0
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if proc.name.isdigit() and proc.stat().st_uid == uid:
                    count += len(os.listdir(proc / "task"))
        _task_counts[uid] = (time.monotonic(), count)
    return count


def _stop_servers(servers: list[ForkServer], scan: bool) -> None:
    """Stop fork servers and remove their dirs; without a pid namespace (``scan``), also kill
    any process that escaped them (its environment still names a HOME under their dir)."""
    for server in servers:
        server.close()
        if scan:
            _kill_escaped(server.base)
        shutil.rmtree(server.base, ignore_errors=True)
    servers.clear()


def _kill_escaped(base: Path) -> None:
    prefix = f"HOME={base}".encode()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and any(
                    v == prefix or v.startswith(prefix + b"/")
                    for v in (proc / "environ").read_bytes().split(b"\0")):
                os.kill(int(proc.name), signal.SIGKILL)


def _failure_reason(code: int, stderr: str) -> str:
    if stderr.strip():
        return stderr
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == 0:
        return "exited 0 before reaching the end of the tests"
    return f"exit code {code}"


# terminal escapes (CSI, OSC such as a window title, two-byte) and other control characters
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_redactor: list = []


def scrub(text: str, base: Path | None = None) -> str:
    """What a program's error text may carry into stored results: its last ``ERROR_LINES``
    non-empty lines, without terminal escapes or control characters, with the server's
    scratch paths cut to the file name (stable across runs), secrets redacted (the miner's
    detect-secrets redactor), at most ``ERROR_CHARS`` characters."""
    if base is not None:
        text = re.sub(re.escape(str(base)) + r"(?:/job[0-9a-f]+-\d+)?(?:/work)?/?", "", text)
    text = _CONTROL.sub("", text)
    lines = [line[-ERROR_CHARS:] for line in text.splitlines() if line.strip()]
    text = "\n".join(lines[-ERROR_LINES:])
    if not _redactor:
        from harness.redact import Redactor

        _redactor.append(Redactor())
    return _redactor[0].redact(text, "stderr.txt")[0][-ERROR_CHARS:]


def _interpreter_probe() -> str:
    """A program that passes only if the child runs our interpreter with our stdlib (as nobody
    a Python under a private dir may silently fall back to another install's stdlib)."""
    want = (sys.version, sys.prefix, sys.base_prefix)
    return f"import sys\ngot = (sys.version, sys.prefix, sys.base_prefix)\nassert got == {want!r}, got"


def _installs() -> list[Path]:
    """The interpreter's install dirs (venv and base Python), outermost only."""
    paths = {Path(os.path.realpath(p)) for p in
             (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    return sorted(p for p in paths if not any(q in p.parents for q in paths))


def _hidden(paths: list[Path]) -> dict[Path, list[Path]]:
    """Paths that nobody cannot reach, grouped by their outermost untraversable ancestor (e.g.
    /root, mode 0700): without a mount namespace (rlimits mode) nobody cannot run a Python
    installed there."""
    by_top: dict[Path, list[Path]] = {}
    for path in paths:
        blocked = [d for d in reversed(path.parents) if not d.stat().st_mode & 0o001]
        if blocked:
            by_top.setdefault(blocked[0], []).append(path)
    return by_top


def _python_paths() -> list[tuple[Path, Path]]:
    """(host path, path in the sandbox) of what the interpreter runs from: its install dirs
    (venv and base Python, as named and resolved), the dir of its real executable and any
    site-packages it imports from outside them; outermost only."""
    named = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                 sys.base_exec_prefix)}
    named |= {Path(os.path.realpath(p)) for p in named}
    named.add(Path(os.path.realpath(sys.executable)).parent)
    named |= {Path(p) for p in sys.path
              if Path(p).name in ("site-packages", "dist-packages") and os.path.isdir(p)}
    outer = sorted(p for p in named if not any(q in p.parents for q in named))
    return [(Path(os.path.realpath(p)), p) for p in outer]


@functools.cache
def _view() -> tuple[tuple[str, ...], ...]:
    """Everything the program sees of the filesystem, built on an empty root that is made
    read-only afterwards: ``SYSTEM_PATHS`` and the interpreter's own dirs bound read-only, the
    ``EMPTY_DIRS`` empty. Every dir made is 0755, so as nobody even a private dir like /root
    can be traversed to a pyenv Python. Nothing else of the host exists inside. Steps:
    ("dir", path), ("ro", host path, path), ("symlink", target, path)."""
    steps: list[tuple[str, ...]] = []
    bound: list[Path] = []
    made: set[Path] = set()

    def parents(path: Path) -> None:
        for d in reversed(path.parents[:-1]):
            if d not in made:
                steps.append(("dir", str(d)))
                made.add(d)

    for path in map(Path, SYSTEM_PATHS):
        if path.is_symlink():
            parents(path)
            steps.append(("symlink", os.readlink(path), str(path)))
        elif path.exists():
            parents(path)
            steps.append(("ro", str(path), str(path)))
            bound.append(path)
    for host, inside in _python_paths():
        if not any(b == inside or b in inside.parents for b in bound):
            parents(inside)
            steps.append(("ro", str(host), str(inside)))
            bound.append(inside)
    for d in map(Path, EMPTY_DIRS):
        if d not in made and not any(b == d or b in d.parents for b in bound):
            steps.append(("dir", str(d)))
    return tuple(steps)


def _bwrap_view() -> list[str]:
    """``_view`` as bwrap args (bwrap would make dirs 0700 unless told)."""
    flags = {"dir": ["--perms", "0755", "--dir"], "ro": ["--ro-bind"], "symlink": ["--symlink"]}
    return [arg for op, *paths in _view() for arg in (*flags[op], *paths)]


def _mount_script(base: Path, scratch: int) -> str:
    """Run as root inside ``unshare --mount --pid --fork``: ``_view`` built with util-linux on
    a tmpfs over ``base`` (the host's empty dir), a /proc of the new pid namespace, the few
    /dev nodes a program needs, the scratch tmpfs at ``base`` inside it, the root remounted
    read-only, then ``exec chroot <root> "$@"``. The mounts die with the namespace; the host
    never sees them."""
    q = shlex.quote
    root = str(base)
    lines = ["set -e", "umask 022", f"mount -t tmpfs -o mode=0755,size=1m sandbox {q(root)}"]
    for op, *paths in _view():
        inside = q(root + paths[-1])
        if op == "dir":
            lines.append(f"mkdir -p {inside}")
        elif op == "symlink":
            lines.append(f"ln -s {q(paths[0])} {inside}")
        else:
            make = (f"mkdir -p {inside}" if os.path.isdir(paths[0])
                    else f"mkdir -p {q(root + os.path.dirname(paths[1]))} && touch {inside}")
            lines += [make, f"mount --bind {q(paths[0])} {inside}",
                      f"mount -o remount,bind,ro {inside}"]
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        lines += [f"mkdir -p {q(root + '/dev')} && touch {q(root + '/dev/' + node)}",
                  f"mount --bind /dev/{node} {q(root + '/dev/' + node)}"]
    lines += [f"mkdir -p {q(root + '/proc')} {q(root + root)}",
              f"mount -t proc proc {q(root + '/proc')}",
              f"mount -t tmpfs -o size={scratch},mode=1777 sandbox {q(root + root)}",
              f"mount -o remount,ro {q(root)}"]
    return "\n".join([*lines, f'exec chroot {q(root)} "$@"'])


def _candidates(mode: str | None) -> list[tuple[str, str]]:
    """(mode, user) pairs from strongest to weakest that this machine has the tools for."""
    pairs = []
    if shutil.which("bwrap") and (not IS_ROOT or shutil.which("setpriv")):
        pairs.append(("bwrap", "nobody" if IS_ROOT else "self"))
    if IS_ROOT and shutil.which("unshare") and shutil.which("mount") and shutil.which("chroot"):
        if shutil.which("setpriv"):
            pairs.append(("unshare", "nobody"))
        pairs.append(("unshare", "self"))
    pairs += [("rlimits", "nobody"), ("rlimits", "self")] if IS_ROOT else [("rlimits", "self")]
    return [p for p in pairs if mode in (None, p[0])]


@functools.cache
def detect(mode: str | None = None) -> tuple[str, str]:
    """The strongest (mode, user) that actually runs our interpreter here (probed once).

    Degrades in order: bwrap as nobody; unshare as nobody; unshare as root (no process
    limit); rlimits as nobody (no network isolation); rlimits as the current user.
    """
    candidates = _candidates(mode)
    if not candidates:
        raise HarnessError(f"sandbox mode {mode!r} is not available here: bwrap needs bubblewrap "
                           "(and setpriv as root), unshare needs root. Fix: set "
                           "eval.sandbox.mode=null to use the strongest mode that works.")
    tried = []
    for m, user in candidates:
        result = Sandbox(timeout_s=30, mode=m, user=user).run(_interpreter_probe())
        if result.passed:
            missing = [k for k, v in guarantees(m, user).items() if not v]
            if tried or missing:
                log.warning("sandbox: mode %s as %s%s%s", m, user,
                            f" (unusable here: {'; '.join(tried)})" if tried else "",
                            f"; missing guarantees: {', '.join(missing)}. Install bubblewrap "
                            "(Debian: apt-get install bubblewrap) for full isolation"
                            if missing else "")
            return m, user
        tried.append(f"{m} as {user}: {result.status}: {result.error.strip()[-200:]}")
    raise HarnessError("no sandbox mode can run the interpreter here:\n" + "\n".join(tried)
                       + f"\nFix: make {sys.executable} and its stdlib readable, or install "
                       "bubblewrap (Debian: apt-get install bubblewrap).")


HOST_PROBE_FILE = "/etc/.harness-sandbox-write-probe"


def known_bad_programs(sandbox: Sandbox, port: int) -> list[tuple[str, str, str]]:
    """(name, program, expected status) for programs a working sandbox must not pass.

    Each would pass if its guard were missing. ``port`` is a listener on the host's loopback.
    Programs probing a guarantee the mode lacks (network, process count, host writes) are left
    out: ``Sandbox.describe()`` reports those as missing instead.
    """
    held = sandbox.guarantees
    big = sandbox.max_file_mb + 1
    bad = [
        ("early_sys_exit", "import sys\nsys.exit(0)\nassert False", "failed"),
        ("early_os_exit", "import os\nos._exit(0)\nassert False", "failed"),
        ("failing_assert", "assert 1 + 1 == 3", "failed"),
        ("infinite_loop", "while True:\n    pass", "timeout"),
        ("memory_bomb", f"x = bytearray({2 * sandbox.memory_mb} << 20)", "failed"),
        ("env_leak",
         "import os\nallowed = {'PATH', 'LANG', 'HOME', 'TMPDIR', 'PYTHONHASHSEED', 'PWD'}\n"
         "assert 'OPENAI_API_KEY' in os.environ or set(os.environ) - allowed", "failed"),
        ("big_file", f"with open('big', 'wb') as f:\n    f.write(b'x' * ({big} << 20))", "failed"),
        # the end of the tests forged without reaching it: a marker from the source, the
        # handshake answered blindly on every fd
        ("forged_end_from_source",
         "import os, re\nfor t in re.findall('[0-9a-f]{32}', open(__file__).read()):\n"
         "    os.write(1, b'\\n' + t.encode() + b'\\n')\nos._exit(0)\nassert False", "failed"),
        ("forged_end_on_every_fd",
         "import os, time\nfds = [int(f) for f in os.listdir('/proc/self/fd') if int(f) > 2]\n"
         "def each(f):\n    for fd in fds:\n        try:\n            f(fd)\n"
         "        except OSError:\n            pass\n"
         "each(lambda fd: os.write(fd, b'E'))\ntime.sleep(0.05)\nanswers = []\n"
         "each(lambda fd: (os.set_blocking(fd, False), answers.append(os.read(fd, 64))))\n"
         "each(lambda fd: [os.write(fd, a) for a in answers])\nos._exit(0)\nassert False",
         "failed"),
    ]
    if held["host_files_hidden"] and os.access("/etc/passwd", os.R_OK):
        bad.append(("host_file_read", "open('/etc/passwd').read()", "failed"))
    if held["process_limit"]:
        bad.append(("fork_bomb",
                    "import os, time\npids = []\n"
                    f"for _ in range({2 * sandbox.max_procs}):\n"
                    "    pid = os.fork()\n    if pid == 0:\n        time.sleep(60)\n"
                    "        os._exit(0)\n    pids.append(pid)\n"
                    "for pid in pids:\n    os.kill(pid, 9)", "failed"))
    if held["unprivileged_user"] or held["read_only_root"]:
        bad.append(("host_write", f"open({HOST_PROBE_FILE!r}, 'w').close()", "failed"))
    if held["network_isolated"]:
        bad += [
            ("net_loopback",
             f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).close()",
             "failed"),
            ("net_internet",
             "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3).close()",
             "failed"),
        ]
    return bad
