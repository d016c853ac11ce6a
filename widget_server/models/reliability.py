"""Inbox, outbox, idempotency and periodic-run records: the tables that make retries safe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "INBOX_OUTCOMES",
    "OUTBOX_STATES",
    "IdempotencyRecord",
    "InboxEvent",
    "OutboxJob",
    "PeriodicRun",
]

INBOX_OUTCOMES = ("pending", "handled", "ignored", "own_write", "unsupported", "failed")
"""`own_write`: every change the event reports is the echo of our own write to the CRM."""
OUTBOX_STATES = ("pending", "done", "failed", "cancelled")


class InboxEvent(Base):
    """A webhook / robot call as received: stored before it is acknowledged, processed by a job."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("portal_id", "dedupe_key"),
        CheckConstraint(_in("outcome", INBOX_OUTCOMES), name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str | None] = mapped_column(String(128))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(128))
    raw_body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class OutboxJob(Base):
    """One change to mirror into the CRM. The database row is the truth; rq only carries the wake-up."""

    __tablename__ = "outbox_jobs"
    __table_args__ = (
        UniqueConstraint("portal_id", "idempotency_key"),
        CheckConstraint(_in("state", OUTBOX_STATES), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_outbox_jobs_due", "state", "next_attempt_at"),
        # A deal's pending jobs by operation: every ledger entry asks whether its deal already has a field
        # sync waiting. Only pending rows are indexed, so the lookup stays one probe however many done
        # jobs a portal keeps (an index on portal_id alone had it walk all of them).
        Index(
            "ix_outbox_jobs_pending_by_deal",
            "portal_id",
            "deal_id",
            "operation",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Indexed through the (portal_id, idempotency_key) unique constraint, whose first column it is.
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(64))
    deal_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    # Sent to the CRM where it supports one, so a retried create finds the first record.
    idempotency_key: Mapped[str] = mapped_column(String(128))
    origin: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=12)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A worker holds the job until this time; a crashed worker's lease simply runs out.
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    done_at: Mapped[datetime | None]


class IdempotencyRecord(Base):
    """The first response to a POST with an Idempotency-Key, replayed for the same key and body."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("portal_id", "key"),
        CheckConstraint("state IN ('in_progress', 'completed')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Indexed through the (portal_id, key) unique constraint, whose first column it is.
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    request_hash: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="in_progress")
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class PeriodicRun(Base):
    """A claim on one (job, scope, period): the unique row is what makes a second or late run a no-op."""

    __tablename__ = "periodic_runs"
    __table_args__ = (UniqueConstraint("job_name", "scope", "period"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_name: Mapped[str] = mapped_column(String(128))
    # "global" or "portal:<id>".
    scope: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
