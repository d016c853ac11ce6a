"""Request budgets shared by every process that talks to one platform account.

amoCRM blocks an account (every call then answers 403 until support unblocks it) when more than 7
requests arrive in a second, and Bitrix24 answers 503 QUERY_LIMIT_EXCEEDED once its leaky bucket
overflows. Web workers, rq workers and cron jobs all call the same portal, so a per-process throttle
would multiply the real rate by the number of processes. The budget therefore lives in Redis:

* `RedisRateLimiter` is an exact sliding window: at most `limit` admissions in ANY `window_s`-second
  window, decided atomically by one Lua script that reads Redis `TIME`, so the clocks of the calling
  hosts never matter.
* `pause()` lets whoever sees a 429/503 with Retry-After stop every other process too.
* `NullRateLimiter` admits everything (tests, sandbox).

Suggested settings: amoCRM `limit=7, window_s=1.0` per egress IP (the "7 per second for IP" rule);
Bitrix24 `limit=2, window_s=1.0` per portal, which never lets the bucket fill, so bursts never trip it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .errors import RetryLater

__all__ = ["KEY_PREFIX", "NullRateLimiter", "RateLimiter", "RedisRateLimiter"]

KEY_PREFIX = "cb:ratelimit:"

# KEYS[1] window zset, KEYS[2] pause flag.
# ARGV[1] limit, ARGV[2] window in µs, ARGV[3] unique member, ARGV[4] zset TTL in ms.
# Returns 0 when admitted, else the wait in µs. Microseconds because a 0.2 s window at ms resolution
# would round the wait down and make callers spin on a request that is still refused.
_ACQUIRE_LUA = """
local pause_ms = redis.call('PTTL', KEYS[2])
if pause_ms > 0 then
  return pause_ms * 1000
end
-- Redis >= 5 replicates a script's effects, not the script, so writing after TIME is allowed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then
  wait = 1
end
return wait
"""

# A pause only ever grows: a process told "wait 1 s" must not cut short another's "wait 300 s".
_PAUSE_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  return 1
end
return 0
"""


@runtime_checkable
class RateLimiter(Protocol):
    """What `PortalHttp` needs from a limiter."""

    def acquire(self, timeout: float | None = 30.0) -> float: ...

    def try_acquire(self) -> float: ...

    def pause(self, seconds: float) -> None: ...

    def paused_for(self) -> float: ...


class RedisRateLimiter:
    """At most `limit` requests in any `window_s`-second window for `key`, across all processes."""

    def __init__(
        self,
        redis_client: Any,
        key: str,
        limit: int,
        window_s: float = 1.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        # bool is an int subclass; limit=True is a bug, not a limit of one.
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if (
            isinstance(window_s, bool)
            or not isinstance(window_s, int | float)
            or not math.isfinite(window_s)
            or window_s <= 0
        ):
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        window_us = round(window_s * 1_000_000)
        if window_us < 1:
            raise ValueError(f"window_s must be at least one microsecond, got {window_s!r}")
        self._redis = redis_client
        self.key = key
        self.limit = limit
        self.window_s = float(window_s)
        self._window_us = window_us
        # Idle keys vanish once nothing in them can matter any more; +1 s covers rounding.
        self._ttl_ms = math.ceil(window_us / 1000) + 1000
        self._window_key = f"{KEY_PREFIX}{key}"
        self._pause_key = f"{KEY_PREFIX}{key}:pause"
        self._acquire_script = redis_client.register_script(_ACQUIRE_LUA)
        self._pause_script = redis_client.register_script(_PAUSE_LUA)
        self._sleep = sleep
        # Members must be unique across processes and calls or ZADD would merge two admissions.
        self._member_prefix = f"{os.getpid()}:{os.urandom(6).hex()}:"
        self._counter = 0
        self._counter_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(key={self.key!r}, limit={self.limit}, window_s={self.window_s})"

    def _member(self) -> str:
        with self._counter_lock:
            self._counter += 1
            return f"{self._member_prefix}{self._counter}"

    def try_acquire(self) -> float:
        """Take one slot if there is one: 0.0 when admitted, else the seconds to wait before asking again."""
        wait_us = self._acquire_script(
            keys=[self._window_key, self._pause_key],
            args=[self.limit, self._window_us, self._member(), self._ttl_ms],
        )
        return int(wait_us) / 1_000_000

    def acquire(self, timeout: float | None = 30.0) -> float:
        """Block until admitted and return the seconds spent waiting.

        Raises `RetryLater` as soon as it is clear the slot cannot come within `timeout` (None waits for
        ever), so a caller under a 300 s pause fails at once rather than after sleeping out its timeout.
        """
        if timeout is not None and (not math.isfinite(timeout) or timeout < 0):
            raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
        started = time.monotonic()
        while True:
            wait = self.try_acquire()
            waited = time.monotonic() - started
            if wait <= 0:
                return waited
            if timeout is not None and waited + wait > timeout:
                raise RetryLater(
                    f"rate limit {self.key!r}: no slot within {timeout:g} s (next in {wait:.3f} s)",
                    retry_after=wait,
                )
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Stop every process from acquiring on this key for `seconds` (extends, never shortens)."""
        if not math.isfinite(seconds):
            raise ValueError(f"seconds must be a finite number, got {seconds!r}")
        ms = math.ceil(seconds * 1000)
        if ms <= 0:
            return
        self._pause_script(keys=[self._pause_key], args=[ms])

    def paused_for(self) -> float:
        """Seconds left of the current pause; 0.0 when not paused."""
        ms = int(self._redis.pttl(self._pause_key))
        return ms / 1000 if ms > 0 else 0.0

    def reset(self) -> None:
        """Forget all admissions and any pause (admin tool, tests)."""
        self._redis.delete(self._window_key, self._pause_key)


class NullRateLimiter:
    """Admits everything and never pauses: for tests and the sandbox, where there is no platform limit."""

    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []

    def __repr__(self) -> str:
        return "NullRateLimiter()"

    def try_acquire(self) -> float:
        self.acquired += 1
        return 0.0

    def acquire(self, timeout: float | None = 30.0) -> float:
        self.acquired += 1
        return 0.0

    def pause(self, seconds: float) -> None:
        # Recorded so tests can see that a client asked for a pause; nothing is enforced.
        self.pauses.append(seconds)

    def paused_for(self) -> float:
        return 0.0
