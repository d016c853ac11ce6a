"""Who is calling: the portal and the roles come from a credential, never from the request body.

Server-to-server callers use per-portal API keys (`Authorization: Bearer cb_…`). The CRM widgets' own
proofs (amoCRM's disposable JWT, Bitrix24's placement auth) plug in here as further authenticators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request
from sqlalchemy import update

from connectors.ratelimit import RedisRateLimiter

from .. import runtime
from ..apikeys import resolve_api_key
from ..db import mark_read_only
from ..errors import ApiError, Forbidden, Unauthorized
from ..models import ApiKey, Portal, implied_roles, utcnow
from .lifecycle import db_session

__all__ = ["Principal", "current_portal", "current_principal", "requires"]

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


def _authenticate() -> tuple[Principal, object]:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        raise Unauthorized("Authorization header missing", fields={"Authorization": ["missing"]})
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized(
            "Authorization must be 'Bearer <api key>'", fields={"Authorization": ["not a bearer credential"]}
        )
    session = db_session()
    record = resolve_api_key(session, credential.strip())
    if record is None:
        raise Unauthorized("API key unknown or revoked", fields={"Authorization": ["unknown or revoked key"]})
    portal = session.get(Portal, record.portal_id)
    if portal is None or portal.status == "uninstalled":
        raise Forbidden("portal is uninstalled", fields={"Authorization": ["portal uninstalled"]})
    g.portal = portal
    return Principal(
        portal_id=portal.id, roles=implied_roles([record.role]), actor=f"apikey:{record.id}", via="api"
    ), record


def requires(role: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Authenticate the request and demand `role` (admin implies every role)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            mark_read_only(db_session())
            principal, record = _authenticate()
            g.principal = principal
            _throttle(principal)
            if not principal.has(role):
                raise Forbidden(f"this action needs the {role} role", code="missing_role")
            _touch(record)
            # End the authentication read so the view's unit of work is a transaction of its own; a
            # GET's is read-only too (on SQLite: no write lock, so reads never queue behind writers).
            db_session().commit()
            if request.method in ("GET", "HEAD"):
                mark_read_only(db_session())
            return view(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _throttle(principal: Principal) -> None:
    """A runaway integration or a stuck retry loop gets 429 instead of starving the clinic's other users.
    The budget lives in Redis, so it holds across web processes."""
    rt = runtime.current()
    limiter = RedisRateLimiter(rt.redis, f"api:{principal.actor}", rt.settings.api_rate_limit, 1.0)
    wait = limiter.try_acquire()
    if wait > 0:
        raise ApiError(
            f"too many requests for this credential (limit {rt.settings.api_rate_limit}/s); retry shortly",
            code="rate_limited",
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _touch(record: object) -> None:
    # last_used_at is advisory: written in its own short transaction, at most once a minute, so that
    # authentication stays a read.
    if not isinstance(record, ApiKey):
        return
    now = utcnow()
    if record.last_used_at is not None and (now - record.last_used_at).total_seconds() < 60:
        return
    with runtime.current().db.transaction() as session:
        session.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now))


def current_principal() -> Principal:
    return g.principal


def current_portal() -> Portal:
    return g.portal
