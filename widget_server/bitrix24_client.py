"""Building a portal's Bitrix24 client, and the loop guard's memory of what our writes left on a deal.

Bitrix24 events carry only the deal id (research/bitrix24.md §4), so an echo of our own write can only
be told by reading the deal: after each of our writes the deal as the platform answered it is kept as a
digest for an hour; an update event whose deal still reads exactly like that changed nothing but what
we wrote, and is marked `own_write`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from connectors.base import CrmClient
from connectors.bitrix24.client import Bitrix24Client
from connectors.bitrix24.limits import (
    ENTERPRISE,
    STANDARD,
    LeakyBucketLimiter,
    OperatingBudget,
    b24_is_throttled,
)
from connectors.bitrix24.oauth import B24OAuth
from connectors.bitrix24.transport import B24Transport
from connectors.http import PortalHttp
from connectors.types import CrmEvent, Deal, DealStageChanged, DealUpdated

from .models import Portal
from .runtime import Runtime
from .tokens import DbTokenSource

__all__ = [
    "AUTH_CONNECTOR",
    "B24NotConfigured",
    "b24_oauth",
    "b24_settings",
    "build_client",
    "deal_digest",
    "is_own_echo",
    "remember_own_write",
]

log = logging.getLogger(__name__)

AUTH_CONNECTOR = "clinicbridge"
"""Passed on offline `event.bind` and on our writes, so the offline queue skips our own changes (§4)."""
OWN_WRITE_TTL_S = 3600
REQUEST_TIMEOUT = (3.05, 55.0)
"""Under the platform's 60 s per request (§7)."""


class B24NotConfigured(RuntimeError):
    """B24_CLIENT_ID / B24_CLIENT_SECRET are not set."""


def _setting(rt: Runtime, name: str) -> str | None:
    value = getattr(rt.settings, name.lower(), None)
    return str(value) if value else None


def b24_oauth(rt: Runtime) -> B24OAuth:
    client_id, secret = _setting(rt, "B24_CLIENT_ID"), _setting(rt, "B24_CLIENT_SECRET")
    if not (client_id and secret):
        raise B24NotConfigured("Bitrix24 app is not configured (B24_CLIENT_ID, B24_CLIENT_SECRET)")
    return B24OAuth(client_id, secret)


def b24_settings(portal: Portal) -> dict[str, Any]:
    return dict((portal.settings or {}).get("bitrix24") or {})


def deal_digest(deal: Deal) -> str:
    state = {
        "name": deal.name,
        "stage": [deal.stage.pipeline_id, deal.stage.stage_id],
        "responsible": deal.responsible_user_id,
        "price": deal.price_minor,
        "fields": {
            k: (list(v) if isinstance(v, tuple) else str(v) if v is not None else None)
            for k, v in sorted(deal.fields.items())
        },
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _own_key(portal_id: int, deal_id: str) -> str:
    return f"cb:b24:own:{portal_id}:{deal_id}"


def remember_own_write(client: redis.Redis, portal_id: int, deal: Deal) -> None:
    client.set(_own_key(portal_id, deal.id), deal_digest(deal), ex=OWN_WRITE_TTL_S)


def is_own_echo(client: redis.Redis, portal_id: int, event: CrmEvent) -> bool:
    """True when the deal still reads exactly as our last write left it (the event reports only that)."""
    if not isinstance(event, DealUpdated | DealStageChanged):
        return False
    stored = client.get(_own_key(portal_id, event.deal_id))
    if stored is None:
        return False
    from . import runtime
    from .registry import crm_for

    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        session.expunge(portal)
    deal = crm_for(portal, rt).get_deal(event.deal_id)
    return deal_digest(deal) == (stored.decode() if isinstance(stored, bytes) else stored)


def build_client(portal: Portal, rt: Runtime) -> Bitrix24Client:
    from connectors.created import RedisCreatedStore

    settings = b24_settings(portal)
    portal_id = portal.id
    tokens = DbTokenSource(rt, portal_id)
    token = tokens.get()
    endpoint = (token.extra.get("client_endpoint") if token else None) or f"https://{portal.domain}/rest/"
    plan = ENTERPRISE if settings.get("plan") == "enterprise" else STANDARD
    limiter = LeakyBucketLimiter(rt.redis, f"b24:{portal.external_id}", plan)
    http = PortalHttp(
        name=f"bitrix24:{portal.slug}",
        limiter=limiter,
        is_throttled=b24_is_throttled,
        timeout=REQUEST_TIMEOUT,
    )

    def moved(new_endpoint: str) -> None:
        from urllib.parse import urlsplit

        host = urlsplit(new_endpoint).hostname
        current = tokens.get()
        with rt.db.transaction() as session:
            row = session.get(Portal, portal_id)
            if row is not None:
                row.domain = host
        if current is not None:
            tokens.save(
                type(current)(
                    current.access_token,
                    current.refresh_token,
                    current.expires_at,
                    {**dict(current.extra), "client_endpoint": new_endpoint},
                )
            )
        log.info("Bitrix24 portal %s moved to %s", portal_id, host)

    refresh = None
    try:
        oauth = b24_oauth(rt)
        refresh = oauth.refresh
    except B24NotConfigured:
        log.warning("Bitrix24 portal %s: no app credentials, tokens cannot be refreshed", portal_id)
    transport = B24Transport(
        client_endpoint=str(endpoint),
        tokens=tokens,
        refresh=refresh,
        http=http,
        budget=OperatingBudget(rt.redis, f"b24:{portal.external_id}"),
        on_moved=moved,
        auth_connector=AUTH_CONNECTOR,
    )
    client = Bitrix24Client(
        transport,
        timezone=portal.timezone,
        created=RedisCreatedStore(rt.redis, f"cb:b24:created:{portal_id}"),
        on_write=lambda deal: remember_own_write(rt.redis, portal_id, deal),
    )
    if settings.get("storage_id"):
        client._storage_id = str(settings["storage_id"])
    return client


def crm_client(portal: Portal, rt: Runtime) -> CrmClient:
    return build_client(portal, rt)
