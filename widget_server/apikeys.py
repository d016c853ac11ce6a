"""API keys: `cb_<prefix>_<secret>`. The prefix finds the row; only a SHA-256 of the whole key is stored.

A plain hash is enough here (no salt, no slow KDF) because the secret is 256 random bits, not a password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session

from . import fast_sql
from .models import ROLES, ApiKey, Portal, utcnow

__all__ = [
    "IssuedKey",
    "issue_api_key",
    "parse_api_key",
    "resolve_api_key",
    "resolve_api_key_and_portal",
    "resolve_api_key_row",
    "revoke_api_key",
]

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    plaintext: str


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_api_key(session: Session, portal: Portal, *, role: str, name: str) -> IssuedKey:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    plaintext = f"cb_{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(portal_id=portal.id, name=name, prefix=prefix, key_hash=_hash(plaintext), role=role)
    session.add(record)
    session.flush()
    return IssuedKey(record=record, plaintext=plaintext)


def parse_api_key(plaintext: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != "cb" or len(parts[1]) != 8 or len(parts[2]) < 20:
        return None
    return parts[1]


def resolve_api_key(session: Session, plaintext: str) -> ApiKey | None:
    """The active key matching `plaintext`, or None. Constant-time on the secret."""
    found = resolve_api_key_and_portal(session, plaintext)
    return found[0] if found else None


_WITH_PORTAL = (
    select(ApiKey, Portal)
    .join(Portal, Portal.id == ApiKey.portal_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)
"""Built once: every authenticated API request runs it (its construction costs more than SQLite's work)."""


def resolve_api_key_and_portal(session: Session, plaintext: str) -> tuple[ApiKey, Portal] | None:
    """The active key matching `plaintext` and its portal (one query), or None. Constant-time on the
    secret."""
    prefix = parse_api_key(plaintext)
    if prefix is None:
        return None
    row = session.execute(_WITH_PORTAL, {"prefix": prefix}).first()
    if row is None or not hmac.compare_digest(row[0].key_hash, _hash(plaintext)):
        return None
    return (row[0], row[1]) if row[0].is_active else None


_PORTAL_COLUMNS = tuple(Portal.__table__.columns)
PortalRow = namedtuple("PortalRow", [column.key for column in _PORTAL_COLUMNS])  # type: ignore[misc]
"""A portal's columns as attributes: what a request that needs no ORM Portal reads of it."""

_KEY_WITH_PORTAL = (
    select(ApiKey.id, ApiKey.key_hash, ApiKey.role, ApiKey.revoked_at, ApiKey.last_used_at, *_PORTAL_COLUMNS)
    .join(Portal, Portal.id == ApiKey.portal_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


@dataclass(frozen=True)
class ResolvedKey:
    """An active key and its portal as plain values (no ORM objects: every API request resolves one)."""

    key_id: int
    role: str
    last_used_at: datetime | None
    portal: Any
    """A PortalRow."""


def resolve_api_key_row(reader: Session | Engine, plaintext: str) -> ResolvedKey | None:
    """`resolve_api_key_and_portal` without ORM objects, or None. Constant-time on the secret. `reader`: the
    session whose transaction the lookup joins, or (SQLite) the engine, for a lookup that is a statement of
    its own (`fast_sql.read_alone`)."""
    prefix = parse_api_key(plaintext)
    if prefix is None:
        return None
    params = {"prefix": prefix}
    if isinstance(reader, Session):
        row = fast_sql.run(reader, _KEY_WITH_PORTAL, params).first()
    else:
        row = fast_sql.read_alone(reader, _KEY_WITH_PORTAL, params).first()
    if row is None or not hmac.compare_digest(row[1], _hash(plaintext)) or row[3] is not None:
        return None
    return ResolvedKey(key_id=row[0], role=row[2], last_used_at=row[4], portal=PortalRow._make(row[5:]))


def revoke_api_key(session: Session, record: ApiKey) -> None:
    if record.revoked_at is None:
        record.revoked_at = utcnow()
