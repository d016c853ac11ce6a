"""Operator payroll (seed 004): the effective-dated rate directory and the monthly statement sent to the head.

Rates are exact decimals (Numeric, two places): the head types them in roubles and kopecks, and every line of
a statement is rounded half-up to kopecks from exact minutes, so nothing here is ever a float.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Date, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = ["OVERTIME_BASES", "PAYROLL_SCHEDULE_KINDS", "PayrollRate", "PayrollSchedule", "PayrollStatement"]

OVERTIME_BASES = ("day", "month")
PAYROLL_SCHEDULE_KINDS = ("weekly", "cyclic", "calendar")


class PayrollRate(Base):
    """One operator's rates from `effective_from` until the next row of the same operator."""

    __tablename__ = "payroll_rates"
    __table_args__ = (
        UniqueConstraint("portal_id", "user_id", "effective_from"),
        CheckConstraint(_in("overtime_basis", OVERTIME_BASES), name="overtime_basis"),
        CheckConstraint(
            "hourly_rate >= 0 AND overtime_rate >= 0 AND primary_bonus >= 0 AND waiting_list_bonus >= 0",
            name="non_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"))
    effective_from: Mapped[date] = mapped_column(Date)
    hourly_rate: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    overtime_rate: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    primary_bonus: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    waiting_list_bonus: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    overtime_basis: Mapped[str] = mapped_column(String(8), default="month")
    # How the MIS writes this operator in a visit's «Записал» (booked_by); the user's own name always counts.
    mis_names: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayrollStatement(Base):
    """The month's statement as it was sent: the row is the once-per-(portal, month) guard of the send."""

    __tablename__ = "payroll_statements"
    __table_args__ = (UniqueConstraint("portal_id", "month"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    month: Mapped[str] = mapped_column(String(7))
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    document: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    head_user_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayrollSchedule(Base):
    """One operator's «Рабочие графики» pattern from `effective_from` until their next row: `weekly`
    ({days: ISO weekdays, start, end}), `cyclic` ({on_days, off_days, anchor, start, end}: 2/2, 1/3 counted
    from the anchor date) or `calendar` (the month's calendar entries alone). `overrides` are single days,
    [{date, start, end}] or [{date}] for a day off (a holiday). Hours are the clinic's wall-clock times."""

    __tablename__ = "payroll_schedules"
    __table_args__ = (
        UniqueConstraint("portal_id", "user_id", "effective_from"),
        CheckConstraint(_in("kind", PAYROLL_SCHEDULE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"))
    effective_from: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    overrides: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
