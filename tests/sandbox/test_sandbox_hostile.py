"""A corpus of hostile programs, each written to pass only if its attack works: every one fails
its sample, the sandbox keeps serving, no process outlives the run and nothing outside the
job's temp dir changes. Runs in the modes with network, filesystem and pid isolation (bwrap,
and unshare as root); test_sandbox_modes.py covers rlimits with the known-bad programs it can
stop."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from harness.sandbox.execute import ERROR_CHARS, IS_ROOT, Sandbox

TAG = f"harness-hostile-{os.getpid()}-{time.time_ns() % 10**9}"
CONTENT = f"planted host content {TAG}"  # not secret-shaped: only the filesystem view hides it
CANARY = f"sk-canary-{TAG}"
MEMORY_MB, MAX_PROCS = 256, 32


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def box(request):
    if request.param == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bwrap mode needs bubblewrap")
    if request.param == "unshare" and not IS_ROOT:
        pytest.skip("unshare mode needs root")
    sandbox = Sandbox(timeout_s=2, workers=1, memory_mb=MEMORY_MB, max_procs=MAX_PROCS,
                      mode=request.param)
    if not sandbox.guarantees["host_files_hidden"]:
        pytest.skip(f"{request.param} mode runs as {sandbox.user} here: no filesystem view")
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="module")
def host():
    """What a program must not reach: world-readable files in the usual places, unix sockets
    (path and abstract), a loopback TCP listener, an API key in the harness's environment."""
    dirs = ["/tmp", "/var/tmp", "/run", "/srv", "/opt", "/home", "/root", str(Path.home())]
    files = []
    for d in dict.fromkeys(dirs):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            f = Path(d) / f"{TAG}.txt"
            f.write_text(CONTENT)
            f.chmod(0o644)
            files.append(f)
    listeners = {}
    for path in (f"/tmp/{TAG}.sock", f"/run/{TAG}.sock", f"\0{TAG}"):
        with_dir = path.startswith("\0") or os.access(os.path.dirname(path), os.W_OK)
        if with_dir:
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            if not path.startswith("\0"):
                os.chmod(path, 0o777)  # like X11's or a world-usable database's socket
            s.listen(8)
            s.setblocking(False)
            listeners[path] = s
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    listeners["tcp"] = tcp
    old_key = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = CANARY
    yield {"files": [str(f) for f in files], "listeners": listeners,
           "unix": [p for p in listeners if p != "tcp"], "port": tcp.getsockname()[1]}
    if old_key is None:
        del os.environ["OPENAI_API_KEY"]
    else:
        os.environ["OPENAI_API_KEY"] = old_key
    for s in listeners.values():
        s.close()
    for path in [*files, *(Path(p) for p in listeners if p.startswith("/"))]:
        path.unlink(missing_ok=True)


# Paths outside the job's temp dir a program may try to write (checked on the host after).
OUTSIDE = [f"{d}/{TAG}.w" for d in ("/tmp", "/var/tmp", "/dev/shm", "/dev", "/run", "/root",
                                    "/home", "/etc", "/usr", os.path.dirname(os.__file__),
                                    Path.cwd())]

# (name, program) pairs; each program passes only if its attack succeeded. Formatted with
# the `host` fixture's values.
READ_HOST_FILES = """
readable = []
for path in {files!r} + ['/etc/passwd', '/etc/hostname', '/proc/1/environ']:
    try:
        readable.append(open(path).read())
    except OSError:
        pass
assert readable
"""
CORPUS = {
    "read_host_files": READ_HOST_FILES,
    "exfiltrate_host_files_in_the_error": """
import glob
found = []
for path in {files!r} + glob.glob('/*/{tag}*') + glob.glob('/*/*/{tag}*'):
    try:
        found.append(open(path).read())
    except OSError as e:
        found.append(str(e))
raise RuntimeError(found)
""",
    "connect_host_unix_sockets": """
import socket
connected = []
for path in {unix!r}:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        connected.append(path)
    except OSError:
        pass
assert connected
""",
    "connect_loopback_tcp": """
import socket
socket.create_connection(('127.0.0.1', {port}), timeout=1).close()
""",
    "connect_internet": """
import socket
socket.create_connection(('1.1.1.1', 53), timeout=1).close()
""",
    "write_outside_the_temp_dir": """
import os
written = []
for path in {outside!r}:
    try:
        with open(path, 'w') as f:
            f.write('x')
        written.append(path)
    except OSError:
        pass
try:
    os.mkdir('/{tag}.d')
    written.append('/{tag}.d')
except OSError:
    pass
assert written
""",
    "read_secrets_from_env_and_proc": """
import glob, os
seen = [*os.environ.values()]
for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):
    try:
        seen.append(open(path, 'rb').read().decode(errors='replace'))
    except OSError:
        pass
needle = {canary_reversed!r}[::-1]  # the key itself appears in no line a traceback shows
assert any(needle in s for s in seen)
""",
    "fork_bomb": """
import os, time
pids = []
for _ in range({procs}):
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    pids.append(pid)
""",
    "memory_hog": "hog = bytearray({memory} << 20)\n",
    "infinite_loop": "while True:\n    pass\n",
    "ignore_cpu_and_term_signals": """
import signal
for sig in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
while True:
    pass
""",
    "fill_the_scratch_disk": """
for i in range(20):
    with open(f'fill{{i}}', 'wb') as f:
        f.write(b'x' * (15 << 20))
""",
    "raise_rlimits": """
import resource
for res in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC):
    resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
""",
    "become_root": "import os\nos.setuid(0)\nassert os.getuid() == 0\n",
    "ptrace_the_executor": """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
attached = libc.ptrace(16, os.getppid(), 0, 0) == 0  # PTRACE_ATTACH
try:
    open(f'/proc/{{os.getppid()}}/mem', 'rb').close()
    mem = True
except OSError:
    mem = False
assert attached or mem
""",
    "user_namespace_then_read_host_files": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.unshare(0x10000000)  # CLONE_NEWUSER: root inside, nothing more outside
""" + READ_HOST_FILES,
    "kill_everything_it_can": """
import os, signal, time
for pid in (-1, 1, os.getppid()):
    for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
time.sleep(0.2)
assert False, 'the executor is still there'
""",
    "crash_itself": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "daemon_left_behind": """
import os, subprocess
subprocess.Popen(['sleep', '{sleep}'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execvp('sleep', ['sleep', '{sleep}'])
assert False
""",
    "flood_stdout_and_stderr": """
import sys
for _ in range(200):
    sys.stdout.write('o' * 100_000)
    sys.stderr.write('e' * 100_000)
raise ValueError('x' * 1_000_000)
""",
    "terminal_escapes_and_secrets_in_the_error": """
raise ValueError('\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred AKIAIOSFODNN7EXAMPLE')
""",
    # The pass-marker forgeries of issue 16, and a blind one.
    "forge_marker_from_own_source": """
import os, re
for token in re.findall(r'[0-9a-f]{{32}}', open(__file__).read()):
    os.write(1, f'\\n{{token}}\\n'.encode())
os._exit(0)
assert False
""",
    "forge_marker_from_a_thread_after_failing": """
import os, re, sys, threading, time
def forge():
    time.sleep(0.3)
    sys.stderr.write('THREAD RAN\\n')
    sys.stderr.flush()
    for token in re.findall(r'[0-9a-f]{{32}}', open(__file__).read()):
        os.write(1, f'\\n{{token}}\\n'.encode())
    os._exit(0)
threading.Thread(target=forge).start()
assert False
""",
    "forge_marker_from_atexit_and_frames": """
import atexit, gc, os, re, sys
def forge():
    sys.stderr.write('ATEXIT RAN\\n')
    sys.stderr.flush()
    found = []
    frame = sys._getframe()
    while frame:
        for value in frame.f_locals.values():
            if isinstance(value, (bytes, str)):
                text = value.decode(errors='replace') if isinstance(value, bytes) else value
                found += re.findall(r'[0-9a-f]{{32}}', text)
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            for value in obj.values():
                if isinstance(value, str):
                    found += re.findall(r'^[0-9a-f]{{32}}$', value)
    for token in found:
        os.write(1, f'\\n{{token}}\\n'.encode())
    os._exit(0)
atexit.register(forge)
assert False
""",
    "forge_by_answering_every_fd": """
import os, time
fds = [int(fd) for fd in os.listdir('/proc/self/fd') if int(fd) > 2]
for fd in fds:
    try:
        os.write(fd, b'E')
    except OSError:
        pass
time.sleep(0.1)
answers = []
for fd in fds:
    try:
        os.set_blocking(fd, False)
        answers.append(os.read(fd, 64))
    except OSError:
        pass
for fd in fds:
    for answer in answers:
        try:
            os.write(fd, answer)
        except OSError:
            pass
os._exit(0)
assert False
""",
    "exit_zero_from_excepthook": """
import os, sys
sys.excepthook = lambda *exc: os._exit(0)
assert False
""",
}
# what each case must end as ("failed" unless it can only be stopped by the timeout)
TIMEOUTS = {"infinite_loop", "ignore_cpu_and_term_signals"}


def program(name: str, host: dict) -> str:
    return CORPUS[name].format(files=host["files"], unix=host["unix"], port=host["port"],
                               outside=OUTSIDE, tag=TAG, canary_reversed=CANARY[::-1],
                               procs=2 * MAX_PROCS, memory=2 * MEMORY_MB, sleep=_sleep_arg(name))


def _sleep_arg(name: str) -> str:
    return f"{abs(hash((TAG, name))) % 10**6}.25"


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_hostile_program_fails_and_the_sandbox_keeps_serving(box, host, name):
    box.run("pass")
    servers = [s.proc.pid for s in box._servers]
    result = box.run(program(name, host))
    assert result.status == ("timeout" if name in TIMEOUTS else "failed"), result
    # nothing the program reached comes back in the stored error, and it stays small
    assert CONTENT not in result.error and CANARY not in result.error
    assert len(result.error) <= ERROR_CHARS and "\x1b" not in result.error
    assert "THREAD RAN" not in result.error and "ATEXIT RAN" not in result.error
    # no connection reached a host listener, no file appeared outside the job's temp dir
    for listener in host["listeners"].values():
        with pytest.raises(BlockingIOError):
            listener.accept()[0].close()
    assert [p for p in [*OUTSIDE, f"/{TAG}.d"] if os.path.exists(p)] == []
    # the same fork server (not a restarted one) runs the next program
    assert box.run("assert sum(range(4)) == 6").passed
    assert [s.proc.pid for s in box._servers if s.proc and s.proc.poll() is None] == servers


def test_the_fork_server_survives_attacks_on_it(box, host):
    """As pid 1 of its namespace the server cannot be killed or frozen from inside; a
    program that tries fails on its own assert, and the same server runs the next one."""
    box.run("pass")
    server = box._servers[-1].proc.pid
    result = box.run(program("kill_everything_it_can", host))
    assert result.status == "failed" and "the executor is still there" in result.error
    assert box._servers[-1].proc.pid == server and box._servers[-1].proc.poll() is None
    assert box.run("pass").passed


def test_nothing_outlives_the_run(box, host):
    box.run(program("daemon_left_behind", host))
    box.run(program("fork_bomb", host))
    time.sleep(0.2)
    tags = {_sleep_arg("daemon_left_behind")}
    assert [p for p in _cmdlines() if tags & set(p)] == []
    bases = [s.base for s in box._servers]
    box.close()
    assert [b for b in bases if b.exists()] == []
    # every process a program starts has its HOME under its server's scratch dir
    homes = [f"HOME={b}".encode() for b in bases]
    assert [e for e in _environs() if any(v.startswith(h) for v in e for h in homes)] == []


def test_programs_running_side_by_side_cannot_reach_each_other():
    """Two workers, two fork servers: one program listens (abstract unix socket) and leaves a
    file in its scratch dir, the other looks for both and for its neighbour's processes."""
    listen = ("import os, socket, time\ns = socket.socket(socket.AF_UNIX)\n"
              f"s.bind('\\0{TAG}-peer')\ns.listen(1)\nopen('{TAG}-peer', 'w').write('x')\n"
              "time.sleep(1.2)\nassert False")
    seek = ("import glob, os, socket, time\nseen = []\nend = time.monotonic() + 1\n"
            "while time.monotonic() < end and not seen:\n"
            "    s = socket.socket(socket.AF_UNIX)\n    try:\n"
            f"        s.connect('\\0{TAG}-peer')\n        seen.append('socket')\n"
            "    except OSError:\n        pass\n"
            f"    seen += glob.glob('/tmp/*/*/{TAG}-peer') + glob.glob('/tmp/*/*/*/{TAG}-peer')\n"
            "    seen += [p for p in glob.glob('/proc/[0-9]*')  # anyone but its server\n"
            "             if p not in ('/proc/1', f'/proc/{os.getpid()}')]\n"
            "    time.sleep(0.05)\nassert seen, 'alone'")
    sandbox = Sandbox(timeout_s=3, workers=2)
    if sandbox.mode != "bwrap":
        pytest.skip("needs bubblewrap's namespaces")
    try:
        first, second = sandbox.run_many([listen, seek])
        assert len(sandbox._servers) == 2
    finally:
        sandbox.close()
    assert first.status == second.status == "failed"
    assert "alone" in second.error, second


def _environs() -> list[list[bytes]]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                out.append((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            pass
    return out


def _cmdlines() -> list[list[str]]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                out.append((proc / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            pass
    return out


def test_the_error_text_is_scrubbed_and_capped(box, host):
    result = box.run(program("terminal_escapes_and_secrets_in_the_error", host))
    assert "\x1b" not in result.error and "\x07" not in result.error
    assert "AKIAIOSFODNN7EXAMPLE" not in result.error and "<secret:" in result.error
    assert result.error.endswith("\nValueError: red <secret:aws-access-key>")
    flood = box.run(program("flood_stdout_and_stderr", host))
    assert flood.status == "failed" and 0 < len(flood.error) <= ERROR_CHARS
    failed = box.run("def f():\n    raise KeyError('k')\nf()")
    assert failed.error.splitlines()[0] == '  File "main.py", line 2, in f'  # no scratch path


@pytest.mark.skipif(not IS_ROOT, reason="planting files in /srv, /opt, /root needs root")
def test_the_planted_files_exist_for_the_host(host):
    """The corpus proves something only if the host itself can read what it planted."""
    assert len(host["files"]) >= 5 and all(Path(f).read_text() == CONTENT for f in host["files"])
    assert len(host["unix"]) == 3
