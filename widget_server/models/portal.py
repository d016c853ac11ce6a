"""Tenants: an installed CRM account and the people in it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, BigIntPK, JsonDoc, utcnow

__all__ = [
    "MEDICAL",
    "PORTAL_KINDS",
    "PORTAL_STATUSES",
    "ROLES",
    "Portal",
    "PortalUser",
    "has_medical",
    "implied_roles",
]

PORTAL_KINDS = ("amocrm", "bitrix24", "sandbox")
PORTAL_STATUSES = ("active", "needs_reauth", "blocked", "uninstalled")

ROLES = ("viewer", "staff", "supervisor", "finance", "admin", "nurse", "doctor")
"""App roles. staff sees stays without money and sets only their own shift status; supervisor also runs
lead distribution (rules, shifts, anyone's status, forced reassignment); finance sees and moves money;
admin does everything, including reversals, overrides and configuration. nurse and doctor are medical staff
(the `medical` capability: prescriptions, rounds, examinations) and see stays without money."""

MEDICAL = "medical"
"""Not a role one is given but a capability the medical roles (and admin) imply: finance reads no medical
records, a nurse reads no money."""

# Not a line: a supervisor runs operators but sees no money, and finance does not run operators.
_IMPLIES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "staff": frozenset({"viewer", "staff"}),
    "supervisor": frozenset({"viewer", "staff", "supervisor"}),
    "finance": frozenset({"viewer", "staff", "finance"}),
    # Admin reads medical records too (`has_medical`) without holding the nurse's or doctor's role.
    "admin": frozenset(ROLES) - {"nurse", "doctor"},
    "nurse": frozenset({"viewer", "staff", "nurse", MEDICAL}),
    "doctor": frozenset({"viewer", "staff", "doctor", MEDICAL}),
}


def has_medical(roles: frozenset[str] | set[str]) -> bool:
    """Medical records (prescriptions, rounds, examinations): the medical roles and admin, never finance."""
    return MEDICAL in roles or "admin" in roles


def implied_roles(roles: list[str] | tuple[str, ...] | set[str]) -> frozenset[str]:
    granted: set[str] = set()
    for role in roles:
        granted |= _IMPLIES.get(role, set())
    return frozenset(granted)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Portal(Base):
    __tablename__ = "portals"
    __table_args__ = (
        UniqueConstraint("kind", "external_id"),
        CheckConstraint(_in("kind", PORTAL_KINDS), name="kind"),
        CheckConstraint(_in("status", PORTAL_STATUSES), name="status"),
        CheckConstraint("length(currency) = 3", name="currency"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    # amoCRM account id or Bitrix24 member_id; for sandboxes a generated id.
    external_id: Mapped[str] = mapped_column(String(128))
    # amoCRM account host (clinic.amocrm.ru) or Bitrix24 domain.
    domain: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    locale: Mapped[str] = mapped_column(String(16), default="ru_RU")
    settings: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    # Fernet token (MultiFernet, rotatable) of the JSON OAuth token; never plaintext.
    token_ciphertext: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None]
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    uninstalled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    users: Mapped[list[PortalUser]] = relationship(back_populates="portal", cascade="all, delete-orphan")

    @property
    def is_usable(self) -> bool:
        return self.status == "active"

    def __repr__(self) -> str:
        return f"<Portal {self.id} {self.kind}:{self.slug} {self.status}>"


class PortalUser(Base):
    __tablename__ = "portal_users"
    __table_args__ = (UniqueConstraint("portal_id", "crm_user_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    crm_user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    portal: Mapped[Portal] = relationship(back_populates="users")

    @property
    def granted_roles(self) -> frozenset[str]:
        return implied_roles(self.roles) if self.active else frozenset()
