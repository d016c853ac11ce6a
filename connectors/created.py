"""Where a CRM client remembers what it created, by idempotency key.

amoCRM has no server-side idempotency (`request_id` is only echoed back, §5.2-5.3) and Bitrix24's
`originId` is only searchable, so each client keeps ``key → id`` itself. Before a POST it records
``pending:<unix time>``; a later call that finds a pending mark reads the platform back before creating
anything. Deals and contacts also carry a searchable reference, so they are looked up on the platform
whenever the store has no id.

`MemoryCreatedStore` serves one process (tests, the CLI); workers should share `RedisCreatedStore`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

__all__ = ["PENDING", "CreatedStore", "MemoryCreatedStore", "RedisCreatedStore", "pending_since"]

PENDING = "pending:"


def pending_since(value: str | None) -> float | None:
    """The unix time a pending mark was set, or None when `value` is not a pending mark."""
    if value is None or not value.startswith(PENDING):
        return None
    try:
        return float(value[len(PENDING) :])
    except ValueError:
        return 0.0


class CreatedStore(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryCreatedStore:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


class RedisCreatedStore:
    """Shared by every process of a deployment; entries expire after `ttl_s` (the outbox's horizon)."""

    def __init__(self, redis: Any, prefix: str, *, ttl_s: int = 30 * 86400) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    def get(self, key: str) -> str | None:
        value = self._redis.get(self._prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    def set(self, key: str, value: str) -> None:
        self._redis.set(self._prefix + key, value, ex=self._ttl_s)

    def delete(self, key: str) -> None:
        self._redis.delete(self._prefix + key)


def now() -> float:
    return time.time()
