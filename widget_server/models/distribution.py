"""Lead distribution: rules (versioned), pools (the lock and counters), operator shifts and status, the
live assignment per deal, and the append-only, hash-chained decisions.

A pool row is the serialisation point: every decision of a pool reads and writes its `state` under a row
lock (PostgreSQL FOR UPDATE; SQLite's BEGIN IMMEDIATE serialises all writers anyway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "ASSIGNMENT_STATES",
    "OPERATOR_STATES",
    "SHIFT_KINDS",
    "DistributionAssignment",
    "DistributionDecision",
    "DistributionPool",
    "DistributionRule",
    "DistributionRuleVersion",
    "OperatorShift",
    "OperatorState",
    "OperatorStatusEvent",
]

OPERATOR_STATES = ("on_shift", "paused", "off")
SHIFT_KINDS = ("weekly", "cyclic", "entry", "absence")
ASSIGNMENT_STATES = ("assigned", "queued", "taken", "closed", "unmatched")


def _portal_fk() -> Any:
    return mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)


class DistributionPool(Base):
    __tablename__ = "distribution_pools"
    __table_args__ = (UniqueConstraint("portal_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(120))
    # Counters the strategies read: last chosen, expected/assigned per user, per-day counts, open load.
    state: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DistributionRule(Base):
    __tablename__ = "distribution_rules"
    __table_args__ = (UniqueConstraint("portal_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    name: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(120))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DistributionRuleVersion(Base):
    """An edit never changes a version: decisions cite the exact document they were made under."""

    __tablename__ = "distribution_rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    rule_id: Mapped[int] = mapped_column(ForeignKey("distribution_rules.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorShift(Base):
    """A weekly pattern, a cyclic N/M pattern, a calendar entry or an absence of one operator."""

    __tablename__ = "operator_shifts"
    __table_args__ = (CheckConstraint(_in("kind", SHIFT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorState(Base):
    """The operator's current self-service status; the events table is its append-only history."""

    __tablename__ = "operator_states"
    __table_args__ = (
        UniqueConstraint("portal_id", "user_id"),
        CheckConstraint(_in("state", OPERATOR_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    paused_until: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]


class OperatorStatusEvent(Base):
    __tablename__ = "operator_status_events"
    __table_args__ = (
        CheckConstraint(_in("state", OPERATOR_STATES), name="state"),
        Index("ix_operator_status_events_portal_at", "portal_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    until: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class DistributionAssignment(Base):
    """The one live assignment of a deal: a retried trigger finds it and returns its decision."""

    __tablename__ = "distribution_assignments"
    __table_args__ = (
        UniqueConstraint("portal_id", "deal_id"),
        CheckConstraint(_in("state", ASSIGNMENT_STATES), name="state"),
        Index("ix_distribution_assignments_pool_state", "pool_id", "state", "queued_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    deal_id: Mapped[str] = mapped_column(String(64))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("distribution_pools.id", ondelete="CASCADE"))
    rule_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_rule_versions.id", ondelete="SET NULL")
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("portal_users.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16))
    decision_id: Mapped[int | None] = mapped_column(Integer)
    hops: Mapped[int] = mapped_column(Integer, default=0)
    earlier_user_ids: Mapped[list[int]] = mapped_column(JsonDoc, default=list)
    # What the trigger knew (pipeline, stage, source, tags, sticky owners): the queue drains with it.
    context: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    trigger: Mapped[str] = mapped_column(String(32))
    assigned_at: Mapped[datetime | None]
    take_by: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    taken_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DistributionDecision(Base):
    """Append-only; each hashes its pool predecessor's hash with its own canonical content."""

    __tablename__ = "distribution_decisions"
    __table_args__ = (
        UniqueConstraint("pool_id", "seq"),
        Index("ix_distribution_decisions_portal_deal", "portal_id", "deal_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("distribution_pools.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    deal_id: Mapped[str] = mapped_column(String(64))
    rule_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("distribution_rule_versions.id", ondelete="SET NULL")
    )
    trigger: Mapped[str] = mapped_column(String(32))
    strategy: Mapped[str | None] = mapped_column(String(32))
    chosen_user_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(48))
    # Everything the choice depended on, so `verify` can re-derive it.
    record: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    previous_decision_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
