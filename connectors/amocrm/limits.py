"""amoCRM's request budget (research/amocrm.md §6) on top of the foundation's Redis limiter.

amoCRM answers 429 above 7 requests per second and blocks the IP or account (every call then 403) after
repeated violations, so two budgets are enforced together, both in Redis and so across processes:

* a hard burst cap, at most 7 requests in ANY 1 s window, which the platform counts;
* the configured sustained rate (`AMO_RATE_LIMIT_RPS`, default 6.5) over 10 s, which keeps a margin for
  clock skew and network jitter between our admission and the platform's count.

Whether the 7 rps is per IP or per account is an open question (§6, Open question 2): scope ``ip``
shares one budget across the whole deployment (safe under both readings), ``account`` one per portal.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import requests

from ..http import PortalHttp
from ..ratelimit import RateLimiter, RedisRateLimiter
from .const import MAX_RPS

__all__ = ["AmoLimiter", "amo_http", "amo_is_throttled", "amo_limiter", "amo_limiter_key"]

SUSTAINED_WINDOW_S = 10
BURST_WINDOW_S = 1.1
"""7 per 1.1 s rather than per 1.0 s: admission is timed at Redis, arrival at amo, and the network between
can bunch requests closer together (measured in bench/amocrm_mirror_bench.py: 8 arrivals in 999.3 ms
with a 1.0 s window). The margin keeps any 1 s window at amo within 7."""


def amo_limiter_key(*, account_id: str, scope: str) -> str:
    if scope == "ip":
        return "amo:ip"
    if scope == "account":
        if not account_id:
            raise ValueError("account scope needs an account_id")
        return f"amo:account:{account_id}"
    raise ValueError(f"scope must be 'ip' or 'account', got {scope!r}")


class AmoLimiter:
    """Both budgets at once; the same interface as `RedisRateLimiter`.

    The sustained budget is taken first and the burst slot last, right before the request goes out: a
    burst slot recorded long before its request was sent would let the platform see more than 7 in a
    second. A sustained slot taken while the burst cap then refuses is simply spent (conservative).
    """

    def __init__(self, burst: RateLimiter, sustained: RateLimiter) -> None:
        self.burst = burst
        self.sustained = sustained

    def __repr__(self) -> str:
        return f"AmoLimiter(burst={self.burst!r}, sustained={self.sustained!r})"

    def try_acquire(self) -> float:
        wait = self.sustained.try_acquire()
        if wait > 0:
            return wait
        return self.burst.try_acquire()

    def acquire(self, timeout: float | None = 30.0) -> float:
        waited = self.sustained.acquire(timeout=timeout)
        remaining = None if timeout is None else max(0.0, timeout - waited)
        return waited + self.burst.acquire(timeout=remaining)

    def pause(self, seconds: float) -> None:
        self.burst.pause(seconds)
        self.sustained.pause(seconds)

    def paused_for(self) -> float:
        return max(self.burst.paused_for(), self.sustained.paused_for())


def amo_limiter(redis: Any, *, account_id: str, rps: Decimal, scope: str = "ip") -> AmoLimiter:
    """The limiter every amoCRM `PortalHttp` should use: ≤ 7 in any 1 s and ≤ `rps` sustained."""
    rate = Decimal(rps)
    if not rate.is_finite() or rate <= 0 or rate > MAX_RPS:
        raise ValueError(f"rps must be in (0, {MAX_RPS}], got {rps!r}")
    key = amo_limiter_key(account_id=account_id, scope=scope)
    sustained_limit = max(1, math.floor(rate * SUSTAINED_WINDOW_S))
    return AmoLimiter(
        burst=RedisRateLimiter(redis, key, limit=MAX_RPS, window_s=BURST_WINDOW_S),
        sustained=RedisRateLimiter(
            redis, f"{key}:sustained", limit=sustained_limit, window_s=float(SUSTAINED_WINDOW_S)
        ),
    )


def amo_is_throttled(response: requests.Response) -> bool:
    """Never "throttled" in `PortalHttp`'s sense (not applied, safe to resend).

    Whether a write answered with 429 was applied is undocumented (§6, Open question 6), so a 429 POST
    must go through the client's read-back like a timeout. GETs and PATCHes are still retried on 429
    because they are idempotent, and `PortalHttp` still pauses the budget on every 429.
    """
    return False


def amo_http(*, name: str, limiter: RateLimiter, **kwargs: Any) -> PortalHttp:
    """A `PortalHttp` with amoCRM's 429 semantics (see `amo_is_throttled`)."""
    return PortalHttp(name=name, limiter=limiter, is_throttled=amo_is_throttled, **kwargs)
