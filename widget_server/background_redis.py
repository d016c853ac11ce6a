"""A web worker's Redis writes that no request has to wait for, sent by one background thread.

Two kinds of Redis traffic follow API requests and neither has to hold a request up: the outbox wake-up
after a commit (the jobs' rows are already committed; the wake-up only spares the mirror the wait for the
30-second sweep) and the API throttle's counters. A request's thread used to wait for both replies, and on
a busy machine Redis answers only when the scheduler gets round to it: the charge benchmark spent a fifth
of each web worker's time in those two waits. A gunicorn web worker (`gunicorn_conf.post_worker_init`)
therefore starts one daemon thread that sends whatever accumulated, at most once per `interval_s`: one
Redis call per interval for any number of requests.

Nothing is lost with the thread: a wake-up that never reaches Redis leaves a pending outbox row that the
sweep wakes; throttle counts that never reach Redis only make the throttle more lenient for a moment.
Everywhere else — rq jobs, the CLI, tests — `running()` is False and callers talk to Redis inline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_INTERVAL_S", "flush_now", "notify", "register", "running", "start", "stop"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.02
"""Wake-ups reach Redis within about this; throttle counts of other processes are seen this late."""

_flushes: list[Callable[[], None]] = []
_thread: _Sender | None = None


def register(flush: Callable[[], None]) -> None:
    """Add a function that sends one module's accumulated writes (it must tolerate having nothing)."""
    if flush not in _flushes:
        _flushes.append(flush)


def running() -> bool:
    """Whether this process defers its Redis writes to the background thread."""
    return _thread is not None


def notify() -> None:
    """Something is waiting to be sent."""
    sender = _thread
    if sender is not None:
        sender.wake.set()


def flush_now() -> None:
    """Send everything accumulated, in the caller's thread (worker exit, tests)."""
    for flush in list(_flushes):
        try:
            flush()
        except Exception:  # one module's Redis trouble must not keep the others' writes back
            name = getattr(flush, "__qualname__", flush)
            log.warning("background Redis flush %s failed", name, exc_info=True)


def start(interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Start this process's sender thread (idempotent). Call after fork: threads do not survive it."""
    global _thread
    if running():
        return
    _thread = _Sender(interval_s)
    _thread.start()


def stop(timeout_s: float = 2.0) -> None:
    """Stop the thread and send what is left (a worker's graceful exit)."""
    global _thread
    sender, _thread = _thread, None
    if sender is not None:
        sender.stopping = True
        sender.wake.set()
        sender.join(timeout_s)
    flush_now()


class _Sender(threading.Thread):
    def __init__(self, interval_s: float) -> None:
        super().__init__(name="background-redis", daemon=True)
        self.interval_s = interval_s
        self.wake = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            flush_now()
            # Pacing: what arrives meanwhile goes out together in the next round.
            time.sleep(self.interval_s)


def _forget_after_fork() -> None:
    global _thread
    _thread = None


os.register_at_fork(after_in_child=_forget_after_fork)
