"""Tables of the sandbox CRM: the records a real CRM would hold, scoped to one portal each.

Only `widget_server.sandbox.crm` reads and writes them. Every row carries `portal_id`; every `created_key`
is the idempotency key of the create call that made the row, unique per portal (NULL for rows made
without one, e.g. seeded users).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from widget_server.models.base import Base, BigIntPK, JsonDoc, utcnow

__all__ = [
    "SandboxCompany",
    "SandboxCompanyNote",
    "SandboxContact",
    "SandboxDeal",
    "SandboxFile",
    "SandboxNote",
    "SandboxNotification",
    "SandboxTask",
    "SandboxUser",
]

KEY_LENGTH = 255


def _portal_fk() -> MappedColumn[int]:
    return mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)


class SandboxUser(Base):
    """A CRM user. The row id is the CRM user id (exposed as a string)."""

    __tablename__ = "sandbox_users"
    # CRMs treat the login e-mail as unique per account; it also makes seeding idempotent.
    __table_args__ = (UniqueConstraint("portal_id", "email"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_online: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxDeal(Base):
    __tablename__ = "sandbox_deals"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(255))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    stage_id: Mapped[str] = mapped_column(String(64))
    responsible_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("sandbox_users.id", ondelete="SET NULL")
    )
    price_minor: Mapped[int | None] = mapped_column(BigInteger)
    # Custom field values in their stored (JSON) encoding; see crm.encode_field / decode_field.
    fields: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    contact_ids: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    is_closed: Mapped[bool] = mapped_column(default=False)
    loss_reason: Mapped[str | None] = mapped_column(Text)
    # Native deal tags, as amoCRM has them (`add_deal_tag`); names in the order they were added.
    tags: Mapped[list[str]] = mapped_column(JsonDoc, default=list, server_default=text("'[]'"))
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxCompany(Base):
    """A company (a corporate client, an insurer) that contacts and, through them, deals belong to."""

    __tablename__ = "sandbox_companies"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(255))
    responsible_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("sandbox_users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxContact(Base):
    __tablename__ = "sandbox_contacts"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(255))
    # E.164 strings, normalised on write so that lookups can compare exactly.
    phones: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    emails: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    responsible_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("sandbox_users.id", ondelete="SET NULL")
    )
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("sandbox_companies.id", ondelete="SET NULL"), index=True
    )


class SandboxCompanyNote(Base):
    __tablename__ = "sandbox_company_notes"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    company_id: Mapped[int] = mapped_column(
        ForeignKey("sandbox_companies.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxNote(Base):
    __tablename__ = "sandbox_notes"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[int] = mapped_column(ForeignKey("sandbox_deals.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxTask(Base):
    __tablename__ = "sandbox_tasks"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[int] = mapped_column(ForeignKey("sandbox_deals.id", ondelete="CASCADE"), index=True)
    responsible_user_id: Mapped[int] = mapped_column(ForeignKey("sandbox_users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime]
    is_completed: Mapped[bool] = mapped_column(default=False)
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxFile(Base):
    __tablename__ = "sandbox_files"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[int] = mapped_column(ForeignKey("sandbox_deals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxNotification(Base):
    __tablename__ = "sandbox_notifications"
    __table_args__ = (UniqueConstraint("portal_id", "created_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    user_id: Mapped[int] = mapped_column(ForeignKey("sandbox_users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
