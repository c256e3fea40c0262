"""One process owns a run directory at a time: real processes contend for a real flock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from harness.errors import HarnessError
from harness.runlock import run_lock

HOLD = textwrap.dedent("""
    import sys, time
    from harness.runlock import run_lock
    with run_lock(sys.argv[1], "harness train run_name=r"):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of `tmp_path/run` until the test kills it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, holder):
    with pytest.raises(HarnessError) as e, run_lock(tmp_path / "run", "harness eval run_name=r"):
        pass
    text = str(e.value)
    assert f"in use by pid {holder.pid} on {socket.gethostname()}" in text
    assert "`harness train run_name=r`, since 20" in text and "run_name=" in text


def test_a_killed_holder_leaves_nothing_stuck(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_lock(tmp_path / "run", "harness train run_name=r") as path:
        assert f'"pid": {os.getpid()}' in path.read_text()


def test_a_holder_whose_pid_is_gone_points_at_the_worker_that_kept_the_lock(tmp_path):
    # the holder forks a worker (as mining and data loading do), then dies: the worker keeps
    # the inherited lock, and the message says so instead of naming a live holder
    code = textwrap.dedent("""
        import os, sys, time
        from harness.runlock import run_lock
        with run_lock(sys.argv[1], "harness mine run_name=r"):
            worker = os.fork()
            if worker == 0:
                time.sleep(600)
                os._exit(0)
            print(worker, flush=True)
            os._exit(0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.wait()
    try:
        with pytest.raises(HarnessError, match="that pid is gone, so a process it started"), \
                run_lock(tmp_path / "run", "harness eval"):
            pass
    finally:
        os.kill(worker, signal.SIGKILL)
