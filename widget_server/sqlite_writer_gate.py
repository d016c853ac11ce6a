"""One SQLite writer at a time, queued in the kernel instead of in SQLite's busy handler.

SQLite serialises writers itself: a `BEGIN IMMEDIATE` that finds the write lock taken sleeps in the busy
handler and tries again, after 1, 2, 5, 10, 15, 20, 25 … 100 ms. Under a burst of writes from several web
workers that turns a lock held for a millisecond into waits of tens of milliseconds (the charge benchmark
measured a p99 of 160 ms and a maximum of 1.2 s). Before `BEGIN IMMEDIATE` a writer therefore takes an
exclusive `flock` on a file beside the database, polled with short, growing sleeps (50 µs up to 0.5 ms), and
releases it right after COMMIT or ROLLBACK, so the next writer starts within a fraction of a millisecond.

The gate is only a faster queue in front of SQLite's own lock, never a replacement for it: where it cannot
be taken in time, or a thread opens a second write transaction while it holds one (the busy handler then
reports the self-deadlock as before), the writer goes straight to `BEGIN IMMEDIATE`.

A gunicorn web worker's request thread waits in a blocking `flock` instead (`wait_blocking()`, from
`gunicorn_conf.post_worker_init`): the kernel hands the gate over the moment it is released, where a poll
finds it free only at its next wake-up, up to half a millisecond later, during which the one write lock
stands idle. `flock` has no timeout, and none is needed there: a request stuck behind a holder that never
lets go is ended by gunicorn's worker timeout, as a stuck request would be anyway. Other threads and
processes (rq jobs, the CLI, tests) keep the poll and its timeout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

__all__ = ["WriterGate", "wait_blocking"]

_FIRST_SLEEP_S = 0.00005
_MAX_SLEEP_S = 0.0005
_blocking_thread: int | None = None
"""The thread (a web worker's request thread) that waits in a blocking flock."""


def wait_blocking() -> None:
    """Let the calling thread wait for the gate in a blocking `flock` (see the module's docstring)."""
    global _blocking_thread
    _blocking_thread = threading.get_ident()


def _forget_blocking_thread() -> None:
    # A forked child is another worker (or an rq work-horse): it registers its own request thread, if any.
    global _blocking_thread
    _blocking_thread = None


os.register_at_fork(after_in_child=_forget_blocking_thread)


class WriterGate:
    """The file lock of one SQLite database, held by at most one transaction of this process's threads."""

    def __init__(self, database: Path, timeout_s: float) -> None:
        self.path = database.with_name(database.name + ".writer-lock")
        self.timeout_s = timeout_s
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A forked child shares the parent's open file descriptions, and with them any flock: start afresh.
        self._local = threading.local()

    def _fd(self) -> int:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            # One open file description per thread: flock excludes descriptions, so threads of one
            # process queue like processes do. Closed when the thread's locals go away with the thread.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            handle = self._local.handle = _Handle(fd)
        return handle.fd

    def enter(self, connection: Any) -> None:
        """Wait for the gate before `connection` (DBAPI or pooled) begins writing."""
        owner = _raw(connection)
        if getattr(self._local, "owner", None) is not None:
            return  # this thread already writes through another connection: SQLite reports the deadlock
        fd = self._fd()
        if _blocking_thread == threading.get_ident():
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._local.owner = owner
            return
        sleep, deadline = _FIRST_SLEEP_S, time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(sleep)
                sleep = min(sleep * 2, _MAX_SLEEP_S)
                continue
            self._local.owner = owner
            return

    def leave(self, connection: Any) -> None:
        """After `connection`'s COMMIT or ROLLBACK (or its close): let the next writer in."""
        if getattr(self._local, "owner", None) is _raw(connection):
            self._local.owner = None
            fcntl.flock(self._local.handle.fd, fcntl.LOCK_UN)


def _raw(connection: Any) -> Any:
    # SQLAlchemy hands the dialect the pool's proxy on commit and rollback, the DBAPI connection elsewhere.
    return getattr(connection, "dbapi_connection", connection)


class _Handle:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)
