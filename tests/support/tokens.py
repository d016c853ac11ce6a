"""An in-memory `TokenSource` for connector tests (amoCRM and Bitrix24 alike)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from connectors.types import OAuthToken

__all__ = ["MemoryTokens"]


class MemoryTokens:
    """Keeps the pair in memory, records what was saved and every re-auth; a real lock, so threads can
    share it as workers share the Redis-locked store."""

    def __init__(self, token: OAuthToken) -> None:
        self.token: OAuthToken | None = token
        self.saved: list[OAuthToken] = []
        self.reauth: list[str] = []
        self._lock = threading.Lock()

    def get(self) -> OAuthToken | None:
        return self.token

    def save(self, token: OAuthToken) -> None:
        self.token = token
        self.saved.append(token)

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        with self._lock:
            yield

    def mark_reauth_required(self, reason: str) -> None:
        self.reauth.append(reason)
