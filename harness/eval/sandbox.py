"""Run untrusted, model-generated Python programs and decide pass/fail.

Each program runs in a fresh temp dir (its cwd, HOME and TMPDIR), in its own session, under
rlimits (address space, CPU, file size, processes, no core dumps), with a scrubbed environment
(no API keys) and a wall-clock timeout that SIGKILLs the whole process group. As root the child
runs as uid 65534 (nobody), because RLIMIT_NPROC is not enforced for root. The network is cut
by the strongest mechanism that works here, detected once per process (``Sandbox.mode``):

- "bwrap": bubblewrap with net, pid, ipc and uts namespaces unshared and a read-only ``/``
  (as root: bwrap runs privileged, re-exposes an interpreter that lives under a private dir
  such as /root, and setpriv drops to nobody inside; otherwise: unprivileged, user namespace);
- "unshare": util-linux ``unshare --net`` (root only), then ``setpriv`` down to nobody;
- "rlimits": no network isolation, rlimits only.

A sample passes only if the exit code is 0 AND the last stdout line is a random per-run marker
printed by a line appended after the program's last test: an early ``sys.exit(0)`` or
``os._exit(0)`` never reaches it. This guards against generated code that exits early by
accident or habit, not against code written to read its own source and forge the marker.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.eval.benchmarks import Problem

MODES = ("bwrap", "unshare", "rlimits")
NOBODY = 65534
IS_ROOT = os.geteuid() == 0
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# -I minus -E: -E would make the interpreter ignore PYTHONHASHSEED=0, and string-hash order
# decides some set/dict outputs; the environment is fully ours, so -E protects nothing here.
INTERPRETER = (sys.executable, "-s", "-P") if sys.version_info >= (3, 11) else (sys.executable, "-s")
_SANDBOX_TOOL_PREFIXES = ("bwrap:", "unshare:", "setpriv:")
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


class Sandbox:
    """Executes programs in isolation; see the module docstring for the guarantees.

    ``mode`` None auto-detects (cached per process); pass "rlimits" etc. only to test a mode.
    """

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 1024, workers: int = 2,
                 max_procs: int = 64, max_file_mb: int = 16, mode: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.workers = workers
        self.max_procs = max_procs
        self.max_file_mb = max_file_mb
        if mode not in (None, *MODES):
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode: str = mode or detect_mode()

    def run(self, program: str) -> ExecResult:
        """Run one program; never raises for anything the program does."""
        marker = secrets.token_hex(16)
        start = time.monotonic()
        base = Path(tempfile.mkdtemp(prefix="harness-sandbox-"))
        try:
            work = base / "work"
            work.mkdir()
            script = work / "main.py"
            script.write_text(program + _epilogue(marker), encoding="utf-8")
            if IS_ROOT:  # the child runs as nobody: let it in, and own its dir
                base.chmod(0o711)
                for path in (work, script):
                    os.chown(path, NOBODY, NOBODY)
            env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(work),
                   "TMPDIR": str(work), "PYTHONHASHSEED": "0"}
            # Output goes to files the child inherits, not pipes: a lingering grandchild cannot
            # block us, and RLIMIT_FSIZE caps how much a print loop can write.
            with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err:
                try:
                    proc = subprocess.Popen(
                        self._command(work, script, env), cwd=work, env=env,
                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                        start_new_session=True,
                        preexec_fn=functools.partial(self._set_limits, self._nproc_limit()),
                        **self._user_kwargs())
                except (OSError, subprocess.SubprocessError) as e:
                    return ExecResult("error", f"could not start the sandbox: {e}",
                                      time.monotonic() - start)
                exited = _wait_exit(proc.pid, self.timeout_s)
                _kill_group(proc.pid)  # also reaps stragglers left after a normal exit
                code = proc.wait()
                if self.mode != "bwrap":  # bwrap's pid namespace dies with it
                    _kill_escaped(work)
                duration = time.monotonic() - start
                stdout, stderr = _tail(out), _tail(err)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        if not exited:
            return ExecResult("timeout", f"killed after the {self.timeout_s:g}s timeout", duration)
        lines = stdout.splitlines()
        if code == 0 and lines and lines[-1] == marker:
            return ExecResult("passed", "", duration)
        if stderr.startswith(_SANDBOX_TOOL_PREFIXES):
            return ExecResult("error", stderr.strip()[-500:], duration)
        return ExecResult("failed", _failure_reason(code, stderr), duration)

    def run_many(self, programs: list[str], desc: str = "executing") -> list[ExecResult]:
        """Run programs on ``workers`` threads (each waits on a child process); order kept."""
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
        total_bad = len(known_bad_programs(self, 0))
        if broken or leaks or not probe.passed:
            raise HarnessError(
                f"Sandbox self-check failed in mode {self.mode!r}.\n"
                + ("" if probe.passed else f"The child does not run {sys.executable} with its own "
                   f"stdlib ({probe.status}: {probe.error[-300:]})\n")
                + (f"References that did not pass ({len(broken)}/{len(problems)}): "
                   + "; ".join(broken[:10]) + "\n" if broken else "")
                + (f"Known-bad programs not stopped: {'; '.join(leaks)}\n" if leaks else "")
                + "Evaluation scores would be wrong. Check that the interpreter is readable by "
                  "uid 65534 when running as root, and that timeouts/limits suit this machine.")
        return {"mode": self.mode, "references_passed": len(problems) - len(broken),
                "references_total": len(problems), "known_bad_failed": total_bad - len(leaks),
                "known_bad_total": total_bad, "seconds": round(time.monotonic() - start, 2)}

    def _command(self, work: Path, script: Path, env: dict[str, str]) -> list[str]:
        python = [*INTERPRETER, str(script)]
        drop_root = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        if self.mode == "bwrap":
            setenv = [x for key, value in env.items() for x in ("--setenv", key, value)]
            # As root, bwrap runs privileged (kuid 0 would be exempt from RLIMIT_NPROC inside a
            # user namespace), mounts the interpreter visible, then setpriv drops to nobody.
            unshare = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                        "--unshare-cgroup-try"] if IS_ROOT else ["--unshare-all"])
            return ["bwrap", *unshare, "--die-with-parent", "--new-session",
                    "--ro-bind", "/", "/", *(_expose_interpreter() if IS_ROOT else ()),
                    "--dev", "/dev", "--proc", "/proc",
                    "--bind", str(work), str(work), "--chdir", str(work), "--clearenv", *setenv,
                    *(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", *drop_root]
                      if IS_ROOT else []),
                    *python]
        if self.mode == "unshare":  # needs root to unshare, so drop to nobody afterwards
            return ["unshare", "--net", "--", *drop_root, *python]
        return python

    def _user_kwargs(self) -> dict:
        if IS_ROOT and self.mode == "rlimits":
            return {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        return {}

    def _nproc_limit(self) -> int:
        """RLIMIT_NPROC caps all tasks of the child's real uid, not just the child's own: a
        non-root user's shell, editor and this process already count, so the budget is
        ``max_procs`` on top of what that uid runs now."""
        return self.max_procs + _tasks_owned_by(NOBODY if IS_ROOT else os.getuid())

    def _set_limits(self, nproc: int) -> None:
        """preexec_fn: runs in the child between fork and exec; limits are inherited by all
        its descendants and set hard too, so the program cannot raise them back."""
        cpu = math.ceil(self.timeout_s) + 1  # backstop if our wall-clock kill never comes
        for res, soft, hard in (
            (resource.RLIMIT_AS, self.memory_mb << 20, self.memory_mb << 20),
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_FSIZE, self.max_file_mb << 20, self.max_file_mb << 20),
            (resource.RLIMIT_NPROC, nproc, nproc),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            cur_hard = resource.getrlimit(res)[1]
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))


def _epilogue(marker: str) -> str:
    """Lines appended after the program's last test; they print the marker on its own line."""
    return (
        "\n\nimport os as _harness_os, sys as _harness_sys\n"
        "for _harness_stream in (_harness_sys.stdout, _harness_sys.__stdout__):\n"
        "    try:\n"
        "        _harness_stream.flush()\n"
        "    except BaseException:\n"
        "        pass\n"
        f"_harness_os.write(1, b'\\n{marker}\\n')\n"
    )


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit without reaping it, so that its zombie keeps the process-group
    id reserved and the killpg that follows cannot hit a recycled pid."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # Linux < 5.3: poll instead
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            time.sleep(0.005)
        return False
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tasks_owned_by(uid: int) -> int:
    """Tasks (threads included) now running as ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                count += len(os.listdir(proc / "task"))
    return count


def _kill_escaped(work: Path) -> None:
    """Kill descendants that left the process group (setsid/daemonize): they still carry the
    run's unique HOME in their environment."""
    needle = f"HOME={work}".encode()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)


def _tail(f, limit: int = 8192) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - limit))
    return f.read().decode("utf-8", errors="replace")


def _failure_reason(code: int, stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if lines:
        return "\n".join(lines[-3:])[-500:]
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == 0:
        return "exited 0 before reaching the end of the tests"
    return f"exit code {code}"


def _interpreter_probe() -> str:
    """A program that passes only if the child runs our interpreter with our stdlib (as nobody
    a Python under a private dir may silently fall back to another install's stdlib)."""
    want = (sys.version, sys.prefix, sys.base_prefix)
    return f"import sys\ngot = (sys.version, sys.prefix, sys.base_prefix)\nassert got == {want!r}, got"


@functools.cache
def _expose_interpreter() -> tuple[str, ...]:
    """bwrap args that let nobody reach the interpreter when it lives under a private dir (e.g.
    pyenv or uv Pythons in /root, mode 0700): a tmpfs hides that dir, the install is bound back."""
    installs = {Path(os.path.realpath(p)) for p in
                (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    installs = {p for p in installs if not any(q in p.parents for q in installs)}
    by_top: dict[Path, list[Path]] = {}
    for install in sorted(installs):
        blocked = [d for d in reversed(install.parents) if not d.stat().st_mode & 0o001]
        if blocked:
            by_top.setdefault(blocked[0], []).append(install)
    args: list[str] = []
    for top, paths in by_top.items():
        args += ["--tmpfs", str(top)]
        for install in paths:
            for d in reversed(install.parents):
                if top in d.parents:
                    args += ["--perms", "0755", "--dir", str(d)]
            args += ["--ro-bind", str(install), str(install)]
    return tuple(args)


@functools.cache
def detect_mode() -> str:
    """The strongest isolation that actually runs our interpreter here (probed once)."""
    candidates = []
    if shutil.which("bwrap") and (not IS_ROOT or shutil.which("setpriv")):
        candidates.append("bwrap")
    if IS_ROOT and shutil.which("unshare") and shutil.which("setpriv"):
        candidates.append("unshare")
    for mode in candidates:
        result = Sandbox(timeout_s=30, mode=mode).run(_interpreter_probe())
        if result.passed:
            return mode
        log.warning("sandbox mode %s is unusable here (%s: %s)", mode, result.status,
                    result.error)
    log.warning("sandbox has no network isolation: install bubblewrap (bwrap) or run as root")
    return "rlimits"


def known_bad_programs(sandbox: Sandbox, port: int) -> list[tuple[str, str, str]]:
    """(name, program, expected status) for programs a working sandbox must not pass.

    Each would pass if its guard were missing. ``port`` is a listener on the host's loopback;
    the network probes are only included when the mode claims network isolation.
    """
    big = sandbox.max_file_mb + 1
    bad = [
        ("early_sys_exit", "import sys\nsys.exit(0)\nassert False", "failed"),
        ("early_os_exit", "import os\nos._exit(0)\nassert False", "failed"),
        ("failing_assert", "assert 1 + 1 == 3", "failed"),
        ("infinite_loop", "while True:\n    pass", "timeout"),
        ("memory_bomb", f"x = bytearray({2 * sandbox.memory_mb} << 20)", "failed"),
        ("fork_bomb",
         "import os, time\npids = []\n"
         f"for _ in range({2 * sandbox.max_procs}):\n"
         "    pid = os.fork()\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
         "    pids.append(pid)\n"
         "for pid in pids:\n    os.kill(pid, 9)", "failed"),
        ("env_leak",
         "import os\nallowed = {'PATH', 'LANG', 'HOME', 'TMPDIR', 'PYTHONHASHSEED', 'PWD'}\n"
         "assert 'OPENAI_API_KEY' in os.environ or set(os.environ) - allowed", "failed"),
        ("big_file", f"with open('big', 'wb') as f:\n    f.write(b'x' * ({big} << 20))", "failed"),
    ]
    if sandbox.mode != "rlimits":
        bad += [
            ("net_loopback",
             f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).close()",
             "failed"),
            ("net_internet",
             "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3).close()",
             "failed"),
        ]
    return bad
