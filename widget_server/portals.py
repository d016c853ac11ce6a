"""Creating and looking up portals (tenants)."""

from __future__ import annotations

import re
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import is_currency
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import PORTAL_KINDS, Portal

__all__ = ["PortalInputError", "create_portal", "find_portal"]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")


class PortalInputError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def create_portal(
    session: Session,
    *,
    kind: str,
    name: str,
    timezone: str,
    currency: str,
    slug: str | None = None,
    external_id: str | None = None,
    domain: str | None = None,
    settings: dict | None = None,
) -> Portal:
    if kind not in PORTAL_KINDS:
        raise PortalInputError("kind", f"must be one of {', '.join(PORTAL_KINDS)}, got {kind!r}")
    if not name.strip():
        raise PortalInputError("name", "must not be empty")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PortalInputError("timezone", f"unknown IANA timezone {timezone!r}") from None
    if not is_currency(currency.upper()):
        raise PortalInputError("currency", f"not an ISO 4217 code: {currency!r}")
    slug = slug or f"{kind}-{secrets.token_hex(4)}"
    if not _SLUG.match(slug):
        raise PortalInputError("slug", "3-64 characters: lowercase latin letters, digits and dashes")
    if session.scalar(select(Portal.id).where(Portal.slug == slug)) is not None:
        raise PortalInputError("slug", f"{slug!r} is taken")
    portal = Portal(
        kind=kind,
        name=name.strip(),
        slug=slug,
        timezone=timezone,
        currency=currency.upper(),
        external_id=external_id or f"{kind}-{secrets.token_hex(8)}",
        domain=domain,
        settings=settings or {},
    )
    session.add(portal)
    session.flush()
    return portal


def find_portal(session: Session, ref: str) -> Portal | None:
    """By slug, or by numeric id."""
    condition = Portal.slug == ref
    if ref.isdigit():
        condition = or_(condition, Portal.id == int(ref))
    return session.scalar(select(Portal).where(condition))
