"""Patient journey automation: rules (versioned), their firings (one row per rule and occurrence), answers
the patient gave, what we know of each deal's stage and fields, and the per-portal sweep watermark.

A firing row is the once-only guard: it is created `scheduled` when its anchor is known (a visit's start,
a completed visit, an answer, a stage entered) and turns `fired` in the same transaction as its outbox jobs,
by a conditional UPDATE; the unique (rule, occurrence) pair makes a replayed event plan nothing new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "ANSWER_KINDS",
    "FIRING_STATES",
    "JourneyAnswer",
    "JourneyDeal",
    "JourneyRule",
    "JourneyRuleVersion",
    "JourneySweep",
    "RuleFiring",
]

FIRING_STATES = ("scheduled", "fired", "expired", "skipped", "cancelled")
ANSWER_KINDS = ("confirmation", "nps", "plus")


def _portal_fk() -> Any:
    return mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)


class JourneyRule(Base):
    __tablename__ = "journey_rules"
    __table_args__ = (UniqueConstraint("portal_id", "name"), UniqueConstraint("portal_id", "key"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    # The seed template's rule key (`confirm_d1.request`); None for a clinic's own rule.
    key: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JourneyRuleVersion(Base):
    """Never changed once written: a firing cites the document it fired under."""

    __tablename__ = "journey_rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    rule_id: Mapped[int] = mapped_column(ForeignKey("journey_rules.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RuleFiring(Base):
    __tablename__ = "journey_firings"
    __table_args__ = (
        UniqueConstraint("rule_id", "occurrence"),
        CheckConstraint(_in("state", FIRING_STATES), name="state"),
        # The sweep's query: a portal's due occurrences, oldest first, read straight off the index.
        Index("ix_journey_firings_portal_state_due", "portal_id", "state", "due_at"),
        Index("ix_journey_firings_portal_deal", "portal_id", "deal_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    rule_id: Mapped[int] = mapped_column(ForeignKey("journey_rules.id", ondelete="CASCADE"))
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("journey_rule_versions.id", ondelete="CASCADE"))
    # What makes this occurrence itself: `appt:<id>:<start>`, `last:<visit id>`, `answer:<id>` …
    occurrence: Mapped[str] = mapped_column(String(255))
    deal_id: Mapped[str | None] = mapped_column(String(64))
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("mis_appointments.id", ondelete="SET NULL"), index=True
    )
    patient_id: Mapped[int | None] = mapped_column(Integer)
    anchor_at: Mapped[datetime | None]
    # When the rule meant it to happen; `due_at` moves later only while a message waits out quiet hours.
    planned_at: Mapped[datetime]
    due_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    reason: Mapped[str | None] = mapped_column(Text)
    # The anchor's facts (answer value, the deal a previous firing created) and what was sent.
    context: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class JourneyAnswer(Base):
    """A patient's answer; the same answer again (a replayed hook, a retried POST) is the same row."""

    __tablename__ = "journey_answers"
    __table_args__ = (
        UniqueConstraint("portal_id", "deal_id", "kind", "value"),
        CheckConstraint(_in("kind", ANSWER_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class JourneyDeal(Base):
    """A deal as CRM events and our own actions told us: stage (and since when), loss reason, fields we
    read for conditions, and the patient it belongs to."""

    __tablename__ = "journey_deals"
    __table_args__ = (
        UniqueConstraint("portal_id", "deal_id"),
        Index("ix_journey_deals_patient", "portal_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[str | None] = mapped_column(String(64))
    stage_id: Mapped[str | None] = mapped_column(String(64))
    stage_entered_at: Mapped[datetime | None]
    loss_reason: Mapped[str | None] = mapped_column(String(200))
    fields: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    patient_id: Mapped[int | None] = mapped_column(Integer)
    # A deal one of our rules created (NPS, hygiene): the deal it was copied from.
    origin_deal_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JourneySweep(Base):
    """Per portal: everything due up to `swept_until` has been decided."""

    __tablename__ = "journey_sweeps"
    __table_args__ = (UniqueConstraint("portal_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    swept_until: Mapped[datetime]
    counts: Mapped[dict[str, int]] = mapped_column(JsonDoc, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
