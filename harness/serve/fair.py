"""A lock granted in arrival order, so requests sharing one model take turns token by token."""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    """A mutual-exclusion lock handed to its waiters first come, first served.

    `threading.Lock` promises no order: the thread that releases it and asks again at once (a
    long request's decode loop) usually wins again, and a short request waits for the whole
    long one. Here `release` hands the lock directly to the longest waiter, so requests that
    each take it for one decoding step advance round-robin: a short request waits one step per
    active request per token, never for another request to finish. The standard library has
    no FIFO lock for threads (asyncio.Lock is FIFO, but for coroutines).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append(baton)
        baton.acquire()  # released by `release`, which hands over ownership (`_held` stays True)

    def release(self) -> None:
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def locked(self) -> bool:
        return self._held

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
