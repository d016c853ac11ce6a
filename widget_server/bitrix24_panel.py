"""Session tokens for the Bitrix24 deal tab: the frame is verified once, the panel then calls our API.

Bitrix24 gives the tab a user's OAuth token, which the browser could replay anywhere; we verify it once
(`app.info` on the OAuth server) and hand the panel our own short-lived token instead, bound to
(portal, CRM user, deal) and to the user's roles at that moment. `cbw_` tells it from API keys
(`cb_…`); only its SHA-256 is kept (in Redis, expiring), so a Redis dump leaks no usable token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import PortalUser
from .runtime import Runtime

__all__ = [
    "PANEL_TOKEN_PREFIX",
    "PANEL_TOKEN_TTL_S",
    "PanelSession",
    "issue_panel_token",
    "resolve_panel_token",
]

PANEL_TOKEN_PREFIX = "cbw_"  # noqa: S105 - a prefix, not a secret
PANEL_TOKEN_TTL_S = 8 * 3600
"""A working shift; the tab is re-rendered (and a new token issued) on every open of the card."""


@dataclass(frozen=True)
class PanelSession:
    portal_id: int
    crm_user_id: str
    deal_id: str
    roles: tuple[str, ...]


def _key(token: str) -> str:
    return "cb:b24w:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def user_roles(session: Session, portal_id: int, crm_user_id: str) -> tuple[str, ...]:
    user = session.scalar(
        select(PortalUser).where(PortalUser.portal_id == portal_id, PortalUser.crm_user_id == crm_user_id)
    )
    return tuple(sorted(user.granted_roles)) if user is not None else ()


def issue_panel_token(rt: Runtime, panel: PanelSession) -> str:
    token = PANEL_TOKEN_PREFIX + secrets.token_urlsafe(32)
    data = {
        "portal_id": panel.portal_id,
        "user": panel.crm_user_id,
        "deal": panel.deal_id,
        "roles": panel.roles,
    }
    rt.redis.set(_key(token), json.dumps(data), ex=PANEL_TOKEN_TTL_S)
    return token


def resolve_panel_token(rt: Runtime, token: str) -> PanelSession | None:
    if not token.startswith(PANEL_TOKEN_PREFIX):
        return None
    raw = rt.redis.get(_key(token))
    if raw is None:
        return None
    data = json.loads(raw)
    return PanelSession(int(data["portal_id"]), str(data["user"]), str(data["deal"]), tuple(data["roles"]))
