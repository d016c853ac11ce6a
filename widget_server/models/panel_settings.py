"""Versioned portal settings: every save is a row with who, when, what changed and the whole result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow

__all__ = ["PortalSettingsVersion"]


class PortalSettingsVersion(Base):
    __tablename__ = "portal_settings_versions"
    __table_args__ = (
        # Two admins saving at once cannot both become version N: the second gets a conflict.
        UniqueConstraint("portal_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changes: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    """{"setting.path": {"from": old, "to": new}} for each setting this save changed."""
    snapshot: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
