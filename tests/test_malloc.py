"""CPU runs switch glibc malloc to reuse freed memory (harness/malloc.py)."""

from __future__ import annotations

import subprocess
import sys

# a child process (the switch lasts for the life of the process that makes it): four 64 MiB
# blocks: how many more blocks glibc mmap'd (mallinfo2().hblks)
CHILD = """
import ctypes, ctypes.util, sys
from harness.malloc import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks "
                                                "fsmblks uordblks fordblks keepcost").split()]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.mallinfo2.restype = Info
if sys.argv[1] == "switch":
    assert keep_freed_memory() and keep_freed_memory()
before = libc.mallinfo2().hblks
blocks = [libc.malloc(64 << 20) for _ in range(4)]
print(libc.mallinfo2().hblks - before)
"""


def mmapped_blocks(*args: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True,
                         text=True).stdout
    return int(out)


def test_after_the_switch_large_blocks_come_from_the_heap_not_from_mmap():
    assert mmapped_blocks("default") == 4
    assert mmapped_blocks("switch") == 0
