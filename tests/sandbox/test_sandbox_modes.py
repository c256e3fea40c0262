"""Every sandbox mode works here, says what it guarantees, and stops what it claims to stop;
the fork server leaves nothing behind between samples."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.sandbox.execute import IS_ROOT, Sandbox, _hidden, _installs, known_bad_programs

PRIVATE_PYTHON = IS_ROOT and bool(_hidden(_installs()))  # e.g. pyenv under /root (0700)


@pytest.fixture(scope="module", params=["bwrap", "unshare", "rlimits"])
def box(request) -> Sandbox:
    mode = request.param
    if (mode == "bwrap" and not _has("bwrap")) or (mode == "unshare" and not IS_ROOT):
        pytest.skip(f"{mode} mode needs {'bubblewrap' if mode == 'bwrap' else 'root'}")
    sandbox = Sandbox(timeout_s=2, workers=2, mode=mode)
    yield sandbox
    sandbox.close()


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def test_each_mode_runs_our_interpreter_and_says_what_it_lacks(box):
    from harness.sandbox.execute import _interpreter_probe

    assert box.run(_interpreter_probe()).passed
    d = box.describe()
    assert d["mode"] == box.mode and set(d["missing"]).isdisjoint(d["guarantees"])
    # as root, nobody cannot exec a Python under a private dir without a mount namespace: the
    # rlimits mode then runs as root, and root is exempt from the process limit
    as_self = not IS_ROOT or (box.mode == "rlimits" and PRIVATE_PYTHON)
    missing = {"bwrap": set(), "unshare": set(),
               "rlimits": {"network_isolated", "pid_namespace", "read_only_root",
                           "host_files_hidden"}}[box.mode]
    if IS_ROOT and as_self:
        missing |= {"unprivileged_user", "process_limit"}
    assert box.user == ("self" if as_self else "nobody")
    assert set(d["missing"]) == missing


def test_each_mode_stops_the_known_bad_programs_it_claims_to(box):
    box.run("pass")
    servers = [s.proc.pid for s in box._servers]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        bad = known_bad_programs(box, listener.getsockname()[1])
        got = {name: box.run(program).status for name, program, _ in bad}
    assert got == {name: want for name, _, want in bad}
    # stopped by the sandbox, not by crashing it: the same fork servers are still serving
    assert [s.proc.pid for s in box._servers if s.proc and s.proc.poll() is None] == servers
    held = box.guarantees
    assert ("fork_bomb" in got) == held["process_limit"]
    assert ("net_loopback" in got) == held["network_isolated"]


def test_nothing_outlives_its_sample(box):
    tag = f"{time.time_ns() % 10**6}.321"
    daemon = (f"import subprocess\nsubprocess.Popen(['sleep', '{tag}'], start_new_session=True)\n"
              "open('left-behind', 'w').write('x')\n")
    assert box.run(daemon).passed
    time.sleep(0.2)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == tag]
    result = box.run("import os\nassert not os.path.exists('left-behind'), os.getcwd()")
    assert result.passed, result.error


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().split(b"\0")[1].decode()
    except (OSError, IndexError):
        return ""


def test_samples_are_independent_processes(box):
    draw = "import random\nraise SystemExit(repr((random.random(), __name__)))"
    first, second = box.run(draw), box.run(draw)
    assert first.error != second.error and "'__main__'" in first.error  # fresh random state
    pickled = ("import pickle\nclass A:\n    pass\nassert type(pickle.loads(pickle.dumps(A()))) is A\n"
               "import sys\nassert sys.argv[0].endswith('main.py')")
    assert box.run(pickled).passed


def test_a_program_that_kills_its_executor_fails_and_the_next_one_runs():
    # rlimits mode: the executor is not a namespace's pid 1 (under bwrap the kill is dropped,
    # see test_sandbox_hostile.py), so the program really kills it
    box = Sandbox(timeout_s=5, workers=1, mode="rlimits")
    killed = box.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\n"
                     "time.sleep(1)")
    assert killed.status == "failed" and "died" in killed.error
    assert box.run("assert 1 + 1 == 2").passed
    box.close()


def test_required_guarantees_are_enforced():
    weak = Sandbox(mode="rlimits")
    with pytest.raises(HarnessError, match=r"without \['network_isolated'\].*bubblewrap"):
        weak.require(["network_isolated"])
    with pytest.raises(HarnessError, match="unknown guarantees"):
        weak.require(["magic"])
    weak.require([])


@pytest.mark.skipif(not PRIVATE_PYTHON, reason="needs root and a Python nobody cannot reach")
def test_a_mode_that_cannot_run_the_interpreter_is_an_error_not_a_failure():
    result = Sandbox(mode="rlimits", user="nobody").run("pass")  # what auto-detection avoids
    assert result.status == "error" and "Permission denied" in result.error
