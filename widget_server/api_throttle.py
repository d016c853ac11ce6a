"""The API's per-credential request budget, shared by every web process through Redis.

A runaway integration or a stuck retry loop gets 429 instead of starving the clinic's other users. The
budget is a sliding-window counter (the estimate Cloudflare and others use): the requests of the current
one-second window plus the previous window's, weighted by how much of it still overlaps the last second.
That needs two integers per credential, where an exact log of every admission (what the CRM egress
limiter in `connectors/ratelimit.py` keeps, because amoCRM blocks an account for an eighth request) would
need one sorted-set member each. Window numbers come from Redis's clock, so the web hosts' clocks never
matter.

Two ways to ask:
* inline (`admit` outside a web worker): one script decides and counts atomically in Redis — exact;
* deferred (a gunicorn worker runs the `background_redis` thread): the worker decides from the counts its
  last flush brought back plus its own requests since, and the thread sends its counts and fetches every
  process's totals at most every few milliseconds. No request waits for Redis; a credential can overshoot
  only by what other processes admitted within one flush interval.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from . import background_redis

__all__ = ["KEY_PREFIX", "ApiThrottle", "throttle_for"]

KEY_PREFIX = "cb:api-budget:"
_WINDOW_US = 1_000_000
_TTL_MS = 3 * _WINDOW_US // 1000
"""A credential's counts vanish once idle for longer than the windows that still matter."""

# Both scripts below: only the current and the previous window count, so older fields go, and the whole
# hash once the credential is idle.
_KEEP_RECENT_LUA = """
local function keep_recent(key, window, ttl)
  if redis.call('HLEN', key) > 2 then
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if tonumber(field) < window - 1 then redis.call('HDEL', key, field) end
    end
  end
  redis.call('PEXPIRE', key, ttl)
end
"""

# One hash per credential, field = window number. KEYS[1] the hash; ARGV[1] the limit, ARGV[2] the
# window in µs, ARGV[3] the hash's TTL in ms. Returns 0 when admitted (and counted), else the wait in µs.
_ADMIT_LUA = _KEEP_RECENT_LUA + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local length = tonumber(ARGV[2])
local window = math.floor(now / length)
local elapsed = (now - window * length) / length
local current = tonumber(redis.call('HGET', KEYS[1], window) or '0')
local previous = tonumber(redis.call('HGET', KEYS[1], window - 1) or '0')
local limit = tonumber(ARGV[1])
if previous * (1 - elapsed) + current + 1 > limit then
  local wait
  if current + 1 > limit or previous == 0 then
    wait = (window + 1) * length - now
  else
    wait = math.ceil(((1 - (limit - current - 1) / previous) - elapsed) * length)
  end
  if wait < 1 then wait = 1 end
  return wait
end
redis.call('HINCRBY', KEYS[1], window, 1)
keep_recent(KEYS[1], window, ARGV[3])
return 0
"""

# KEYS: one hash per entry (a credential may come twice, once per window). ARGV[1] the window in µs,
# ARGV[2] the TTL in ms, then per entry the window its count belongs to, as windows before Redis's current
# one (0 or 1: the sender's clock may be off, only its window boundaries are used), and the count. Returns
# Redis's clock (TIME's seconds and microseconds: a Lua number would lose digits on the way out), then per
# entry the current and the previous window's totals.
_SYNC_LUA = _KEEP_RECENT_LUA + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = math.floor(now / tonumber(ARGV[1]))
local out = {t[1], t[2]}
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[2 * i + 2])
  if count > 0 then
    redis.call('HINCRBY', key, window - tonumber(ARGV[2 * i + 1]), count)
  end
  keep_recent(key, window, ARGV[2])
  out[#out + 1] = tonumber(redis.call('HGET', key, window) or '0')
  out[#out + 1] = tonumber(redis.call('HGET', key, window - 1) or '0')
end
return out
"""


@dataclass
class _Known:
    """A credential's totals over all processes as of this process's last flush."""

    window: int
    current: int
    previous: int


class ApiThrottle:
    """The request budget of every credential, for one Redis."""

    def __init__(self, redis_client: Any, *, clock_us: Any = None) -> None:
        self._redis = redis_client
        self._admit_script = redis_client.register_script(_ADMIT_LUA)
        self._sync_script = redis_client.register_script(_SYNC_LUA)
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self._pending: dict[tuple[str, int], int] = {}
        """Admissions this process has not sent yet, per (credential, window)."""
        self._in_flight: dict[tuple[str, int], int] = {}
        """Admissions on their way to Redis: still counted until the flush's totals include them."""
        self._offset_us = 0
        """Redis's clock minus ours, from the last flush."""

    def admit(self, credential: str, limit: int) -> float:
        """0.0 when the request may go ahead (it is counted), else the seconds to wait before retrying."""
        if not background_redis.running():
            wait_us = self._admit_script(keys=[KEY_PREFIX + credential], args=[limit, _WINDOW_US, _TTL_MS])
            return int(wait_us) / 1_000_000
        wait = self._admit_locally(credential, limit)
        if wait == 0:
            background_redis.notify()
        return wait

    def _admit_locally(self, credential: str, limit: int) -> float:
        local = self._clock_us()
        # Totals are numbered by Redis's windows; this process's own counts by its clock's (only where they
        # split between windows depends on it, so a skewed clock never drops them).
        window, into = divmod(local + self._offset_us, _WINDOW_US)
        own = local // _WINDOW_US
        elapsed = into / _WINDOW_US
        with self._lock:
            current, previous = self._totals(credential, window, own)
            if previous * (1 - elapsed) + current + 1 > limit:
                if current + 1 > limit or previous == 0:
                    return (_WINDOW_US - into) / 1_000_000
                return max(1e-6, (1 - (limit - current - 1) / previous) - elapsed)
            self._pending[(credential, own)] = self._pending.get((credential, own), 0) + 1
        return 0.0

    def _totals(self, credential: str, window: int, own: int) -> tuple[int, int]:
        """Every process's admissions in this window and the previous one, as far as this process knows."""
        known = self._known.get(credential)
        if known is None or known.window < window - 1:
            current = previous = 0
        elif known.window == window - 1:
            current, previous = 0, known.current
        else:
            current, previous = known.current, known.previous
        for counts in (self._pending, self._in_flight):
            current += counts.get((credential, own), 0)
            previous += counts.get((credential, own - 1), 0)
        return current, previous

    def flush(self) -> None:
        """Send this process's admissions since the last flush and learn every process's totals for the
        credentials it has seen lately (the background thread's job; callable directly)."""
        with self._lock:
            if not self._pending:
                return
            batch = self._in_flight = self._pending
            self._pending = {}
        sent_at = self._clock_us()
        now_window = sent_at // _WINDOW_US
        # Counts of windows already past no longer matter to anyone.
        entries = [(key, count) for key, count in batch.items() if now_window - key[1] <= 1]
        try:
            reply = self._sync_script(
                keys=[KEY_PREFIX + credential for (credential, _window), _count in entries],
                args=[
                    _WINDOW_US,
                    _TTL_MS,
                    *(
                        value
                        for (_credential, window), count in entries
                        for value in (max(0, now_window - window), count)
                    ),
                ],
            )
        except Exception:
            with self._lock:
                self._in_flight = {}
            raise
        received_at = self._clock_us()
        redis_now = int(reply[0]) * 1_000_000 + int(reply[1])
        window = redis_now // _WINDOW_US
        with self._lock:
            # Redis read its clock about halfway through the round trip.
            self._offset_us = redis_now - (sent_at + received_at) // 2
            for index, ((credential, _counted), _count) in enumerate(entries):
                current, previous = int(reply[2 + 2 * index]), int(reply[3 + 2 * index])
                self._known[credential] = _Known(window, current, previous)
            self._in_flight = {}
            self._forget_idle(window)

    def _forget_idle(self, window: int) -> None:
        stale = [credential for credential, known in self._known.items() if known.window < window - 1]
        for credential in stale:
            del self._known[credential]


_THROTTLES: weakref.WeakKeyDictionary[Any, ApiThrottle] = weakref.WeakKeyDictionary()
_THROTTLES_LOCK = threading.Lock()


def throttle_for(redis_client: Any) -> ApiThrottle:
    """The process's throttle for this Redis client (its local counts must outlive a request)."""
    throttle = _THROTTLES.get(redis_client)
    if throttle is None:
        with _THROTTLES_LOCK:
            throttle = _THROTTLES.setdefault(redis_client, ApiThrottle(redis_client))
    return throttle


def _flush_all() -> None:
    for throttle in list(_THROTTLES.values()):
        throttle.flush()


background_redis.register(_flush_all)
