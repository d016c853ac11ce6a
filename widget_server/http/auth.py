"""Who is calling: the portal and the roles come from a credential, never from the request body.

Server-to-server callers use per-portal API keys (`Authorization: Bearer cb_…`). The CRM widgets' own
proofs (amoCRM's disposable JWT, Bitrix24's placement auth) plug in here as further authenticators.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import g, request
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from connectors.amocrm.widget_auth import InvalidWidgetToken, audience_for, verify_disposable_token

from .. import fast_sql, runtime
from ..amocrm_install import redirect_uri
from ..api_throttle import throttle_for
from ..apikeys import ResolvedKey, resolve_api_key_row
from ..bitrix24_panel import PANEL_TOKEN_PREFIX, resolve_panel_token
from ..db import mark_read_only
from ..errors import ApiError, Forbidden, Unauthorized
from ..models import ApiKey, Portal, PortalUser, implied_roles, utcnow
from .lifecycle import db_session

__all__ = [
    "Principal",
    "current_portal",
    "current_portal_row",
    "current_principal",
    "local_read",
    "requires",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Principal:
    portal_id: int
    roles: frozenset[str]
    actor: str
    """Stable label for audit columns: "apikey:<id>" or "user:<crm user id>"."""
    via: str
    """Where the action came from: api, widget, robot, scheduler."""
    crm_user_id: str | None = None

    def has(self, role: str) -> bool:
        return role in self.roles


def _authenticate(reader: Callable[[], Session]) -> tuple[Principal, object]:
    """`reader()`: the session authentication reads in (opened on first use)."""
    widget_token = request.headers.get("X-Auth-Token")
    if widget_token is not None:
        return _authenticate_amo_widget(widget_token, reader), None
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        raise Unauthorized("Authorization header missing", fields={"Authorization": ["missing"]})
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized(
            "Authorization must be 'Bearer <api key>'", fields={"Authorization": ["not a bearer credential"]}
        )
    if credential.strip().startswith(PANEL_TOKEN_PREFIX):
        return _authenticate_bitrix24_panel(credential.strip(), reader), None
    db = runtime.current().db
    # On SQLite the key and its portal are one statement read on its own: no transaction is opened for it.
    found = resolve_api_key_row(db.engine if db.is_sqlite else reader(), credential.strip())
    if found is None:
        raise Unauthorized("API key unknown or revoked", fields={"Authorization": ["unknown or revoked key"]})
    portal = found.portal
    if portal.status == "uninstalled":
        raise Forbidden("portal is uninstalled", fields={"Authorization": ["portal uninstalled"]})
    # The portal's columns; current_portal() loads the ORM object only for a view that asks for it.
    g.portal_row = portal
    return Principal(
        portal_id=portal.id, roles=implied_roles([found.role]), actor=f"apikey:{found.key_id}", via="api"
    ), found


def _authenticate_amo_widget(token: str, reader: Callable[[], Session]) -> Principal:
    """The amoCRM widget's disposable JWT: portal and user come only from its verified claims."""
    rt = runtime.current()
    settings = rt.settings
    if not (settings.amo_client_id and settings.amo_client_secret):
        raise Unauthorized(
            "amoCRM widget calls are not configured here", fields={"X-Auth-Token": ["not accepted"]}
        )
    try:
        claims = verify_disposable_token(
            token,
            client_secret=settings.amo_client_secret,
            client_id=settings.amo_client_id,
            audience=audience_for(redirect_uri(rt)),
        )
    except InvalidWidgetToken as exc:
        raise Unauthorized(
            str(exc), fields={"X-Auth-Token": [str(exc).removeprefix("X-Auth-Token: ")]}
        ) from None
    session = reader()
    portal = session.scalar(
        select(Portal).where(Portal.kind == "amocrm", Portal.external_id == claims.account_id)
    )
    if portal is None or portal.status == "uninstalled":
        raise Unauthorized(
            "no installed amoCRM account for this token", fields={"X-Auth-Token": ["unknown account"]}
        )
    if not (portal.domain or "").startswith(f"{claims.subdomain}."):
        raise Unauthorized(
            "token subdomain does not match the installed account",
            fields={"X-Auth-Token": ["subdomain mismatch"]},
        )
    user = session.scalar(
        select(PortalUser).where(PortalUser.portal_id == portal.id, PortalUser.crm_user_id == claims.user_id)
    )
    roles = user.granted_roles if user is not None else frozenset()
    if not roles:
        raise Forbidden("your amoCRM user has no ClinicBridge role; ask an administrator", code="no_role")
    if claims.jti and not rt.redis.set(f"cb:amo:jti:{claims.jti}", "1", nx=True, ex=1800):
        # amo's widget may reuse a token within its 30 minutes (several calls per render): log, don't refuse.
        log.info("amoCRM widget token %s reused", claims.jti)
    g.portal = portal
    return Principal(
        portal_id=portal.id,
        roles=roles,
        actor=f"user:{claims.user_id}",
        via="widget",
        crm_user_id=claims.user_id,
    )


def _authenticate_bitrix24_panel(token: str, reader: Callable[[], Session]) -> Principal:
    """The Bitrix24 deal tab's session token, issued after the frame passed `app.info` (bitrix24_panel)."""
    panel = resolve_panel_token(runtime.current(), token)
    if panel is None:
        raise Unauthorized(
            "panel session unknown or expired", fields={"Authorization": ["unknown or expired"]}
        )
    portal = reader().get(Portal, panel.portal_id)
    if portal is None or portal.status == "uninstalled":
        raise Unauthorized("portal is uninstalled", fields={"Authorization": ["portal uninstalled"]})
    if not panel.roles:
        raise Forbidden("your Bitrix24 user has no ClinicBridge role; ask an administrator", code="no_role")
    g.portal = portal
    return Principal(
        portal_id=portal.id,
        roles=frozenset(panel.roles),
        actor=f"user:{panel.crm_user_id}",
        via="widget",
        crm_user_id=panel.crm_user_id,
    )


def _read_apart() -> Session:
    """The request's session in a read-only transaction of its own (begun now unless already begun)."""
    session = db_session()
    if not session.in_transaction():
        mark_read_only(session)
    return session


def requires(role: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Authenticate the request and demand `role` (admin implies every role)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        local = getattr(view, "works_only_here", False)

        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # On PostgreSQL a view that works only in this database authenticates in its own transaction
            # (one transaction per request instead of two). On SQLite that transaction holds the one write
            # lock from its first statement: authenticating (and, outside a web worker, whose throttle
            # decides locally, the rate limit's Redis round trip) apart keeps every other writer's wait
            # that much shorter; an API key is then one statement on its own, no transaction at all.
            joined = local and not runtime.current().db.is_sqlite
            principal, record = _authenticate(db_session if joined else _read_apart)
            g.principal = principal
            if not local and request.method not in ("GET", "HEAD"):
                # Such a view may call a CRM or the MIS before it writes: its ORM portal is loaded now, in
                # a read. Loaded on first use it would begin the view's transaction (on SQLite the write
                # lock) before that call. A GET's own transaction is a read: it loads the object there if
                # it asks for it at all.
                _read_apart()
                current_portal()
            _throttle(principal)
            if not principal.has(role):
                raise Forbidden(f"this action needs the {role} role", code="missing_role")
            if joined:
                _touch(record, db_session())
                return view(*args, **kwargs)
            _touch(record)
            # End the authentication read, if it opened one, so the view's unit of work is a transaction
            # of its own; a GET's is read-only too (on SQLite: no write lock, so reads never queue behind
            # writers).
            session = db_session()
            if session.in_transaction():
                session.commit()
            if request.method in ("GET", "HEAD"):
                mark_read_only(session)
            return view(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorate


def local_read(view: Callable[P, R]) -> Callable[P, R]:
    """For a GET whose whole work is reading this database (no CRM, MIS or other waits): on PostgreSQL
    `requires` authenticates in the view's own transaction, one BEGIN/COMMIT per request instead of two, as
    for a `local_mutation`. On SQLite it reads apart, as every view does."""
    view.works_only_here = True  # type: ignore[attr-defined]
    return view


def _throttle(principal: Principal) -> None:
    """A runaway integration or a stuck retry loop gets 429 instead of starving the clinic's other users.
    The budget lives in Redis, so it holds across web processes; it is per portal and credential (CRM user
    ids repeat across portals)."""
    rt = runtime.current()
    limit = rt.settings.api_rate_limit
    wait = throttle_for(rt.redis).admit(f"{principal.portal_id}:{principal.actor}", limit)
    if wait > 0:
        raise ApiError(
            f"too many requests for this credential (limit {limit}/s); retry shortly",
            code="rate_limited",
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


_TOUCH = update(ApiKey).where(ApiKey.id == bindparam("key_id"))


def _touch(record: object, in_transaction: Session | None = None) -> None:
    # last_used_at is advisory: written in its own short transaction, at most once a minute, so that
    # authentication stays a read; a view that authenticates in its own transaction writes it there (a
    # second SQLite writer would wait on that transaction's lock).
    if not isinstance(record, ResolvedKey):
        return
    now = utcnow()
    if record.last_used_at is not None and (now - record.last_used_at).total_seconds() < 60:
        return
    if in_transaction is not None:
        fast_sql.run(in_transaction, _TOUCH, {"key_id": record.key_id, "last_used_at": now})
        return
    with runtime.current().db.transaction() as session:
        fast_sql.run(session, _TOUCH, {"key_id": record.key_id, "last_used_at": now})


def current_principal() -> Principal:
    return g.principal


def current_portal() -> Portal:
    """The caller's portal as an ORM object. An API key's authentication reads only the portal's columns
    (`current_portal_row`); `requires` then loads the object in that same read for every view but a
    `local_mutation`'s, which loads it in its own transaction on first use, if at all."""
    portal = g.get("portal")
    if portal is None:
        portal = g.portal = db_session().get(Portal, g.principal.portal_id)
    return portal


def current_portal_row() -> Any:
    """The caller's portal's columns as attributes (a PortalRow, or the ORM Portal where authentication
    loaded one): for views that read a few of its fields and need no ORM object."""
    return g.get("portal_row") or current_portal()
