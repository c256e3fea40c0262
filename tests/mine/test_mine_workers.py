"""The worker processes of a mine die with it, however it dies (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A parent that starts the real worker pool of a mine, hands each worker a long job, prints the
# workers' process ids and waits: the test then kills it as an impatient user (or the OOM
# killer) would.
PARENT = """
import os, sys, time
from harness.mine.schedule import Workers
with Workers({"workers": 2}) as workers:
    jobs = [workers.pool.submit(time.sleep, 120) for _ in range(2)]
    while len(workers.pool._processes) < 2:
        time.sleep(0.05)
    print(" ".join(str(p) for p in workers.pool._processes), flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has already died


def test_sigkilled_parent_leaves_no_worker_behind():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30  # the kernel's signal is immediate; this is only a bound
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert survivors == []
