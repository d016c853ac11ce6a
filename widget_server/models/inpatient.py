"""The in-patient stay (seed 000): buildings and wards, who lies where, prescriptions and the append-only
round record, examinations, expected arrivals and what the relatives were told.

Money stays in the ledger (`StayAccount`); these rows are joined to it by (portal, deal) only, so the
medical side can be read without touching amounts and the other way round.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "INPATIENT_STATUSES",
    "NOTICE_EVENTS",
    "ROUND_OUTCOMES",
    "ArrivalRequest",
    "Building",
    "DealOutsideSales",
    "Examination",
    "ExpectedArrival",
    "InpatientStay",
    "Prescription",
    "RelativeNotice",
    "RoundEscalation",
    "RoundRecord",
    "Ward",
]

INPATIENT_STATUSES = ("admitted", "discharge_requested", "discharged")
ROUND_OUTCOMES = ("given", "not_given")
NOTICE_EVENTS = ("admission", "purchase", "low_balance", "discharge")


class Building(Base):
    """Корпус: one CRM pipeline, the diagnosis profiles it takes, its manager and its nurses' user."""

    __tablename__ = "inpatient_buildings"
    __table_args__ = (UniqueConstraint("portal_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    admission_stage_id: Mapped[str] = mapped_column(String(64))
    won_stage_id: Mapped[str] = mapped_column(String(64))
    manager_user_id: Mapped[str] = mapped_column(String(64))
    nurse_user_id: Mapped[str | None] = mapped_column(String(64))
    profiles: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ward(Base):
    __tablename__ = "inpatient_wards"
    __table_args__ = (
        UniqueConstraint("building_id", "name"),
        CheckConstraint("beds > 0", name="beds_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("inpatient_buildings.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    beds: Mapped[int] = mapped_column(Integer)


class InpatientStay(Base):
    """Who lies where from when, and who speaks for the patient."""

    __tablename__ = "inpatient_stays"
    __table_args__ = (
        CheckConstraint(_in("status", INPATIENT_STATUSES), name="status"),
        CheckConstraint("discharge_date IS NULL OR discharge_date >= admission_date", name="dates"),
        CheckConstraint("bed > 0", name="bed_positive"),
        # One stay in progress per deal, one patient per bed; discharged stays stay as history.
        Index(
            "uq_inpatient_stays_current_deal",
            "portal_id",
            "deal_id",
            unique=True,
            sqlite_where=text("status <> 'discharged'"),
            postgresql_where=text("status <> 'discharged'"),
        ),
        Index(
            "uq_inpatient_stays_current_bed",
            "ward_id",
            "bed",
            unique=True,
            sqlite_where=text("status <> 'discharged'"),
            postgresql_where=text("status <> 'discharged'"),
        ),
        Index("ix_inpatient_stays_building_status", "building_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    building_id: Mapped[int] = mapped_column(ForeignKey("inpatient_buildings.id"))
    ward_id: Mapped[int] = mapped_column(ForeignKey("inpatient_wards.id"))
    bed: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="admitted")
    admission_date: Mapped[date] = mapped_column(Date)
    discharge_date: Mapped[date | None] = mapped_column(Date)
    representative_name: Mapped[str] = mapped_column(String(200))
    representative_relation: Mapped[str | None] = mapped_column(String(64))
    representative_phone: Mapped[str | None] = mapped_column(String(32))
    representative_email: Mapped[str | None] = mapped_column(String(255))
    representative_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # The CRM contact the representative was found as or created as (filled by the outbox job).
    representative_contact_id: Mapped[str | None] = mapped_column(String(64))
    admitted_by: Mapped[str] = mapped_column(String(128))
    admitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    discharge_requested_by: Mapped[str | None] = mapped_column(String(128))
    documents_done_by: Mapped[str | None] = mapped_column(String(128))
    discharged_at: Mapped[datetime | None]


class Prescription(Base):
    """Назначение: a drug and dose at fixed times of the clinic's day, from one date to another."""

    __tablename__ = "inpatient_prescriptions"
    __table_args__ = (
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
        Index("ix_inpatient_prescriptions_stay", "stay_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    stay_id: Mapped[int] = mapped_column(ForeignKey("inpatient_stays.id", ondelete="CASCADE"))
    drug: Mapped[str] = mapped_column(String(200))
    dose: Mapped[str] = mapped_column(String(100))
    # "HH:MM" in the portal's timezone, sorted.
    times: Mapped[list[str]] = mapped_column(JsonDoc)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    doctor_user_id: Mapped[str | None] = mapped_column(String(64))
    doctor_name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    stopped_by: Mapped[str | None] = mapped_column(String(128))
    stop_reason: Mapped[str | None] = mapped_column(Text)


class RoundRecord(Base):
    """One nurse's mark on one scheduled dose. Append-only: a correction is a new row pointing at the one
    it corrects; each row is corrected at most once, so the latest word on a dose is the row nobody
    corrected."""

    __tablename__ = "inpatient_round_records"
    __table_args__ = (
        CheckConstraint(_in("outcome", ROUND_OUTCOMES), name="outcome"),
        CheckConstraint("outcome = 'given' OR reason IS NOT NULL", name="reason_when_not_given"),
        Index(
            "uq_inpatient_round_records_first",
            "prescription_id",
            "due_at",
            unique=True,
            sqlite_where=text("corrects_id IS NULL"),
            postgresql_where=text("corrects_id IS NULL"),
        ),
        UniqueConstraint("corrects_id"),
        Index("ix_inpatient_round_records_stay_due", "stay_id", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    stay_id: Mapped[int] = mapped_column(ForeignKey("inpatient_stays.id", ondelete="CASCADE"))
    prescription_id: Mapped[int] = mapped_column(ForeignKey("inpatient_prescriptions.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    next_step: Mapped[str | None] = mapped_column(String(32))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("inpatient_round_records.id"))
    actor: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoundEscalation(Base):
    """An overdue dose told to the building manager; the unique pair makes it once, however often the
    sweep runs."""

    __tablename__ = "inpatient_round_escalations"
    __table_args__ = (UniqueConstraint("prescription_id", "due_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("inpatient_prescriptions.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    escalated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Examination(Base):
    """Осмотр врача: who, when, the results (text and document links) and the next steps."""

    __tablename__ = "inpatient_examinations"
    __table_args__ = (Index("ix_inpatient_examinations_stay", "stay_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    stay_id: Mapped[int] = mapped_column(ForeignKey("inpatient_stays.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    doctor_user_id: Mapped[str] = mapped_column(String(64))
    doctor_name: Mapped[str] = mapped_column(String(200))
    examined_on: Mapped[date] = mapped_column(Date)
    results: Mapped[str] = mapped_column(Text)
    links: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    next_steps: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExpectedArrival(Base):
    """A sales deal ready to sign: when the patient comes and the budget; the arrival-day task is sent once
    (`tasked_on`)."""

    __tablename__ = "inpatient_expected_arrivals"
    __table_args__ = (
        UniqueConstraint("portal_id", "deal_id"),
        CheckConstraint("budget_minor IS NULL OR budget_minor >= 0", name="budget_not_negative"),
        Index("ix_inpatient_expected_arrivals_day", "portal_id", "arrival_date"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    arrival_date: Mapped[date] = mapped_column(Date)
    budget_minor: Mapped[int | None] = mapped_column(BigInteger)
    profile: Mapped[str | None] = mapped_column(String(64))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("inpatient_buildings.id"))
    tasked_on: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RelativeNotice(Base):
    """What the representative was told and how (a message through the CRM channel or a task for the
    manager); one per (stay, event, reference) so a sweep never tells twice."""

    __tablename__ = "inpatient_relative_notices"
    __table_args__ = (
        UniqueConstraint("stay_id", "event", "ref"),
        CheckConstraint(_in("event", NOTICE_EVENTS), name="event"),
        CheckConstraint(_in("channel", ("message", "task")), name="channel"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    stay_id: Mapped[int] = mapped_column(ForeignKey("inpatient_stays.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArrivalRequest(Base):
    """A sales deal that reached the portal's «ready to sign» stage in the CRM: its manager was asked for the
    arrival date and the budget, once per deal however often the stage is entered or the hook repeated."""

    __tablename__ = "inpatient_arrival_requests"
    __table_args__ = (UniqueConstraint("portal_id", "deal_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    stage_id: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class DealOutsideSales(Base):
    """A deal last seen outside the pipeline of the «ready to sign» stage (its stage as the CRM said). Such
    a deal comes back only through an event that names its stage (Bitrix24 ONCRMDEALMOVETOCATEGORY, amoCRM
    leads[status]), which updates this row or deletes it; until then its ONCRMDEALUPDATEs, which name no
    stage, are not worth a `crm.item.get` each."""

    __tablename__ = "inpatient_deals_outside_sales"
    __table_args__ = (UniqueConstraint("portal_id", "deal_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    stage_id: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
