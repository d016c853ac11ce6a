"""The database-backed TokenSource: encrypted at rest, one refresh at a time per portal.

amoCRM and Bitrix24 both rotate the refresh token on every refresh. Two processes refreshing together
would each spend the same refresh token and one would lose the grant, so refreshes run under a Redis
lock, and the connector re-reads the token inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectors.errors import RetryLater
from connectors.types import OAuthToken

from .db import mark_read_only
from .models import Portal, utcnow
from .runtime import Runtime

__all__ = ["DbTokenSource"]

LOCK_TTL_S = 60
"""A refresh is one HTTP call; the TTL only matters if the holder dies mid-refresh."""


class DbTokenSource:
    def __init__(self, runtime: Runtime, portal_id: int) -> None:
        self._rt = runtime
        self._portal_id = portal_id

    def get(self) -> OAuthToken | None:
        with self._rt.db.transaction() as session:
            # A CRM call may run while the caller's own transaction holds SQLite's write lock (a request
            # validating against the CRM): reading the token must not queue behind it.
            mark_read_only(session)
            portal = session.get(Portal, self._portal_id)
            ciphertext = portal.token_ciphertext if portal else None
        return self._rt.cipher.decrypt_token(ciphertext) if ciphertext else None

    def save(self, token: OAuthToken) -> None:
        with self._rt.db.transaction() as session:
            portal = session.get(Portal, self._portal_id)
            if portal is None:
                raise LookupError(f"portal {self._portal_id} is gone")
            # When the pair was obtained drives the keep-alive: amo drops a refresh token unused for 3 months.
            stamped = OAuthToken(
                token.access_token,
                token.refresh_token,
                token.expires_at,
                {**dict(token.extra), "saved_at": utcnow().isoformat()},
            )
            portal.token_ciphertext = self._rt.cipher.encrypt_token(stamped)
            portal.token_expires_at = token.expires_at
            if portal.status == "needs_reauth":
                portal.status = "active"

    def mark_reauth_required(self, reason: str) -> None:
        with self._rt.db.transaction() as session:
            portal = session.get(Portal, self._portal_id)
            if portal is not None and portal.status == "active":
                portal.status = "needs_reauth"
                portal.settings = {**(portal.settings or {}), "reauth_reason": reason[:500]}

    @contextmanager
    def refresh_lock(self, timeout: float = 30.0) -> Iterator[None]:
        lock = self._rt.redis.lock(
            f"cb:token-refresh:{self._portal_id}", timeout=LOCK_TTL_S, blocking_timeout=timeout
        )
        if not lock.acquire():
            raise RetryLater(f"token refresh for portal {self._portal_id} is busy", retry_after=5)
        try:
            yield
        finally:
            lock.release()
