"""Bitrix24's request budgets (research/bitrix24.md §7, Facts 14), shared by every process through Redis.

* The **leaky bucket**: each request adds 1 to a per-portal counter that drains `rate` per second; above
  `capacity` the platform answers 503 ``QUERY_LIMIT_EXCEEDED``. `LeakyBucketLimiter` replays the same
  arithmetic (GCRA on Redis' clock) a little inside the platform's figures, so a burst of ~50 goes out
  at once and then 2/s, which a sliding window cannot do (it would allow 50 per 25 s: 12 % less over a
  minute). A 503 marks the bucket full, as the platform's counter evidently is.
* The **operating budget**: the platform sums `time.operating` per method over 10 minutes and answers
  429 ``OPERATION_TIME_LIMIT`` for that method only above the limit (480 s as the working assumption).
  `OperatingBudget` keeps the same sum from the responses and defers work on a method before the limit;
  a 429 pauses just that method until `operating_reset_at`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import RetryLater
from ..ratelimit import KEY_PREFIX

__all__ = [
    "ENTERPRISE",
    "STANDARD",
    "BucketPlan",
    "LeakyBucketLimiter",
    "MemoryOperatingBudget",
    "OperatingBudget",
    "b24_is_throttled",
]


class BucketPlan:
    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate


# Platform figures 50 / 2 per s and 250 / 5 per s; we keep 2 requests of headroom for the requests in
# flight between our admission and the platform's count.
STANDARD = BucketPlan(capacity=48, rate=2.0)
ENTERPRISE = BucketPlan(capacity=246, rate=5.0)

# KEYS[1] tat (µs), KEYS[2] pause flag. ARGV[1] interval µs, ARGV[2] capacity, ARGV[3] mode
# (0 acquire, 1 mark full). Returns 0 when admitted, else the wait in µs.
_GCRA_LUA = """
local pause_ms = redis.call('PTTL', KEYS[2])
if pause_ms > 0 and ARGV[3] == '0' then
  return pause_ms * 1000
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local ttl = math.ceil((tat - now + capacity * interval) / 1000) + 1000
if ARGV[3] == '1' then
  local full = now + capacity * interval
  if full > tat then
    redis.call('SET', KEYS[1], string.format('%d', full), 'PX', ttl + capacity * interval / 1000)
  end
  return 0
end
local wait = tat + interval - capacity * interval - now
if wait > 0 then
  return wait
end
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', ttl)
return 0
"""

_PAUSE_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
"""


class LeakyBucketLimiter:
    """The platform's leaky bucket for one portal; the `RateLimiter` interface of `PortalHttp`."""

    def __init__(
        self,
        redis_client: Any,
        key: str,
        plan: BucketPlan = STANDARD,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not key:
            raise ValueError("key must be a non-empty string")
        self._redis = redis_client
        self.key = key
        self.plan = plan
        self._interval_us = round(1_000_000 / plan.rate)
        self._tat_key = f"{KEY_PREFIX}{key}:tat"
        self._pause_key = f"{KEY_PREFIX}{key}:pause"
        self._script = redis_client.register_script(_GCRA_LUA)
        self._pause_script = redis_client.register_script(_PAUSE_LUA)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"LeakyBucketLimiter(key={self.key!r}, capacity={self.plan.capacity}, rate={self.plan.rate})"

    def try_acquire(self) -> float:
        wait_us = self._script(
            keys=[self._tat_key, self._pause_key], args=[self._interval_us, self.plan.capacity, 0]
        )
        return int(wait_us) / 1_000_000

    def acquire(self, timeout: float | None = 30.0) -> float:
        started = time.monotonic()
        while True:
            wait = self.try_acquire()
            waited = time.monotonic() - started
            if wait <= 0:
                return waited
            if timeout is not None and waited + wait > timeout:
                raise RetryLater(f"bitrix24 bucket {self.key!r}: no slot within {timeout:g} s", wait)
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """After a 503 the platform's counter is full: mark ours full too, and hold everyone `seconds`."""
        self._script(keys=[self._tat_key, self._pause_key], args=[self._interval_us, self.plan.capacity, 1])
        ms = math.ceil(seconds * 1000)
        if ms > 0:
            self._pause_script(keys=[self._pause_key], args=[ms])

    def paused_for(self) -> float:
        ms = int(self._redis.pttl(self._pause_key))
        return ms / 1000 if ms > 0 else 0.0

    def reset(self) -> None:
        self._redis.delete(self._tat_key, self._pause_key)


def b24_is_throttled(response: Any) -> bool:
    """503 QUERY_LIMIT_EXCEEDED was not executed, so any method may be resent after the backoff.

    A 429 is never "throttled" here: it is OPERATION_TIME_LIMIT for one method, which the transport
    turns into a pause of that method before `PortalHttp` would pause the whole portal."""
    if response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "QUERY_LIMIT_EXCEEDED"


OPERATING_LIMIT_S = 480.0
OPERATING_WINDOW_S = 600
DEFER_AT = 0.9
"""Defer a method once 90 % of its 10-minute operating budget is spent, before the platform blocks it."""


class OperatingBudget:
    """`time.operating` per (portal, method) in ten 1-minute Redis baskets, as the platform counts it."""

    def __init__(
        self,
        redis_client: Any,
        key: str,
        *,
        limit_s: float = OPERATING_LIMIT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis_client
        self._prefix = f"{KEY_PREFIX}{key}:op:"
        self.limit_s = limit_s
        self._clock = clock

    def _basket(self, method: str, minute: int) -> str:
        return f"{self._prefix}{method}:{minute}"

    def record(self, method: str, operating: float) -> None:
        if operating <= 0:
            return
        minute = int(self._clock() // 60)
        key = self._basket(method, minute)
        pipe = self._redis.pipeline()
        pipe.incrbyfloat(key, operating)
        pipe.expire(key, OPERATING_WINDOW_S + 120)
        pipe.execute()

    def spent(self, method: str) -> float:
        minute = int(self._clock() // 60)
        values = self._redis.mget([self._basket(method, minute - i) for i in range(10)])
        return sum(float(v) for v in values if v is not None)

    def block(self, method: str, until_unix: float) -> None:
        ms = math.ceil((until_unix - self._clock()) * 1000)
        if ms > 0:
            self._redis.set(f"{self._prefix}{method}:blocked", "1", px=ms)

    def check(self, method: str) -> None:
        """Raise `RetryLater` when `method` is blocked or near its budget."""
        blocked_ms = int(self._redis.pttl(f"{self._prefix}{method}:blocked"))
        if blocked_ms > 0:
            raise RetryLater(f"bitrix24: {method} blocked by OPERATION_TIME_LIMIT", blocked_ms / 1000)
        if self.spent(method) >= self.limit_s * DEFER_AT:
            # The oldest basket leaves the window within a minute; try again then.
            raise RetryLater(f"bitrix24: {method} near its operating limit, deferred", 60.0)


class MemoryOperatingBudget:
    """One process only (tests, CLI): the same rules without Redis."""

    def __init__(self, *, limit_s: float = OPERATING_LIMIT_S, clock: Callable[[], float] = time.time) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._spent: dict[str, list[tuple[float, float]]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, method: str, operating: float) -> None:
        with self._lock:
            self._spent.setdefault(method, []).append((self._clock(), operating))

    def spent(self, method: str) -> float:
        horizon = self._clock() - OPERATING_WINDOW_S
        with self._lock:
            return sum(op for at, op in self._spent.get(method, []) if at > horizon)

    def block(self, method: str, until_unix: float) -> None:
        self._blocked[method] = until_unix

    def check(self, method: str) -> None:
        until = self._blocked.get(method, 0.0)
        if until > self._clock():
            raise RetryLater(f"bitrix24: {method} blocked by OPERATION_TIME_LIMIT", until - self._clock())
        if self.spent(method) >= self.limit_s * DEFER_AT:
            raise RetryLater(f"bitrix24: {method} near its operating limit, deferred", 60.0)
