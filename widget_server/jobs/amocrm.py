"""amoCRM jobs: finish a marketplace install (the code is kept at most 20 minutes), keep tokens fresh, and
poll for changes where the account refused our webhooks."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from connectors.amocrm.polling import POLL_OVERLAP_S, polled_dedupe_key
from connectors.errors import ConnectorError, ReauthRequired, RetryLater
from connectors.types import OAuthToken

from .. import runtime
from ..amocrm_install import amo_oauth, complete_install
from ..inbox import receive_event
from ..models import Portal, utcnow
from ..registry import crm_for
from ..tokens import DbTokenSource
from .joblog import logged_job

__all__ = ["PENDING_CODE_KEY", "finish_widget_install", "poll_amo_changes", "refresh_amo_tokens"]

log = logging.getLogger(__name__)

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


POLL_MAX_LEADS = 2500
"""Leads read per portal per run (10 pages of 250): the rest waits for the next run rather than using up
the account's request budget that the outbox needs too."""
POLL_FIRST_LOOKBACK = timedelta(hours=1)


def _needs_polling(portal: Portal) -> bool:
    webhooks = ((portal.settings or {}).get("amocrm") or {}).get("webhooks") or {}
    return webhooks.get("status") != "subscribed"


def _poll_portal(rt: runtime.Runtime, portal: Portal) -> int:
    amocrm = (portal.settings or {}).get("amocrm") or {}
    watermark = amocrm.get("poll_watermark")
    if not isinstance(watermark, int):
        watermark = int((utcnow() - POLL_FIRST_LOOKBACK).timestamp())
    client = crm_for(portal, rt)
    newest, stored = watermark, 0
    for count, lead in enumerate(client.iter_leads_updated_since(watermark - POLL_OVERLAP_S)):  # type: ignore[attr-defined]
        if count >= POLL_MAX_LEADS:
            break
        with rt.db.transaction() as session:
            _event, new = receive_event(
                session,
                portal_id=portal.id,
                source="amocrm_poll",
                dedupe_key=polled_dedupe_key(lead),
                raw_body=json.dumps(lead, ensure_ascii=False, separators=(",", ":")),
                content_type="application/json",
                event_type="leads.polled",
            )
        stored += new
        newest = max(newest, int(lead.get("updated_at") or 0))
    with rt.db.transaction() as session:
        row = session.get(Portal, portal.id)
        if row is not None:
            settings = dict(row.settings or {})
            settings["amocrm"] = {**(settings.get("amocrm") or {}), "poll_watermark": newest}
            row.settings = settings
    return stored


@logged_job("poll_amo_changes")
def poll_amo_changes() -> str:
    """For accounts whose webhooks were refused: read the leads changed since the last run into the inbox,
    where they get the same dedupe, loop guard and reactions as hooks."""
    rt = runtime.current()
    with rt.db.transaction() as session:
        portals = [
            p
            for p in session.scalars(
                select(Portal).where(
                    Portal.kind == "amocrm", Portal.status == "active", Portal.token_ciphertext.is_not(None)
                )
            )
            if _needs_polling(p)
        ]
        session.expunge_all()
    stored = failed = 0
    for portal in portals:
        try:
            stored += _poll_portal(rt, portal)
        except ConnectorError as exc:
            failed += 1
            log.warning("amoCRM poll of portal %s failed: %s", portal.id, exc)
    return f"polled {len(portals)} portals: {stored} changes stored, {failed} failed"
