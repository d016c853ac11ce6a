"""amoCRM jobs: finish a marketplace install (the code is kept at most 20 minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from connectors.errors import ReauthRequired, RetryLater
from connectors.types import OAuthToken

from .. import runtime
from ..amocrm_install import amo_oauth, complete_install
from ..models import Portal, utcnow
from ..tokens import DbTokenSource
from .joblog import logged_job

__all__ = ["PENDING_CODE_KEY", "finish_widget_install", "refresh_amo_tokens"]

PENDING_CODE_KEY = "cb:amo:install-code:{host}"


@logged_job("finish_widget_install")
def finish_widget_install(host: str) -> str:
    rt = runtime.current()
    code = rt.redis.getdel(PENDING_CODE_KEY.format(host=host))
    if code is None:
        return "no pending code"
    installed = complete_install(rt, host, code.decode() if isinstance(code, bytes) else str(code))
    return f"portal {installed.slug} {'reinstalled' if installed.reinstalled else 'installed'}"


REFRESH_AHEAD = timedelta(minutes=15)
"""Refresh when the access token has less than this left (the job runs every 5 minutes)."""
KEEP_ALIVE = timedelta(days=7)
"""amo forgets a refresh token unused for 3 months; rotating weekly keeps every account well inside that."""


def _due(token: OAuthToken, now: datetime) -> bool:
    if token.expires_at is not None and token.expires_at - now < REFRESH_AHEAD:
        return True
    saved_at = token.extra.get("saved_at")
    return saved_at is None or now - datetime.fromisoformat(str(saved_at)) > KEEP_ALIVE


@logged_job("refresh_amo_tokens")
def refresh_amo_tokens() -> str:
    """Proactive refresh and weekly keep-alive, one portal at a time under its refresh lock."""
    rt = runtime.current()
    with rt.db.transaction() as session:
        portals = [
            (p.id, p.domain)
            for p in session.scalars(
                select(Portal).where(
                    Portal.kind == "amocrm", Portal.status == "active", Portal.token_ciphertext.is_not(None)
                )
            )
        ]
    if not portals:
        return "no amoCRM portals"
    oauth = amo_oauth(rt)
    refreshed = failed = 0
    for portal_id, host in portals:
        source = DbTokenSource(rt, portal_id)
        try:
            with source.refresh_lock(timeout=5):
                token = source.get()  # re-read inside the lock: another process may have rotated it
                if token is None or not _due(token, utcnow()):
                    continue
                source.save(oauth.refresh(host or "", token))
                refreshed += 1
        except ReauthRequired as exc:
            source.mark_reauth_required(str(exc))
            failed += 1
        except RetryLater:
            failed += 1
    return f"refreshed {refreshed} failed {failed} of {len(portals)}"
