"""MIS appointment sync: patients (linked to CRM contacts), one row per MIS visit with the version that won,
the sync runs and their per-record outcomes, and IDENT's last timetable snapshot."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "APPOINTMENT_KINDS",
    "DOC_COLUMNS",
    "SYNC_OUTCOMES",
    "MisAppointment",
    "MisLead",
    "MisPatient",
    "MisPatientPhone",
    "MisSyncRecord",
    "MisSyncRun",
    "MisTimetable",
    "doc_columns",
]

SYNC_OUTCOMES = (
    "created",
    "updated",
    "unchanged",
    "stale",
    "void",
    "rejected",
    "invalid_phone",
    "duplicate_linked",
    "unmapped",
)
APPOINTMENT_KINDS = ("primary", "repeat")
_STATUSES = ("requested", "booked", "confirmed", "arrived", "completed", "cancelled", "no_show", "void")
DOC_COLUMNS = ("doctor_name", "specialty", "branch", "card_number", "booked_by", "channel")
"""Document keys copied into columns of the same name (migration 0015): reports group by them and the caller
pop-up reads them without parsing every visit's JSON."""


def _portal_fk() -> Any:
    return mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)


class MisPatient(Base):
    """A MIS patient. Family members sharing a phone stay separate patients (flag `shared_phone`); a second
    MIS id found to be the same person points at the first through `alias_of_id`, so nothing is deleted."""

    __tablename__ = "mis_patients"
    __table_args__ = (
        UniqueConstraint("portal_id", "source", "source_patient_id"),
        Index("ix_mis_patients_phone", "portal_id", "phone_e164"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    source: Mapped[str] = mapped_column(String(32))
    source_patient_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(300))
    # Case-folded, ё→е, surname + first name: what two spellings of one person share.
    name_key: Mapped[str] = mapped_column(String(300))
    phone_raw: Mapped[str | None] = mapped_column(String(64))
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    other_phones: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    flags: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    alias_of_id: Mapped[int | None] = mapped_column(ForeignKey("mis_patients.id", ondelete="SET NULL"))
    contact_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    phone_rows: Mapped[list[MisPatientPhone]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("other_phones")
    def _index_other_phones(self, _key: str, phones: list[str] | None) -> list[str] | None:
        # Whoever sets the other numbers sets their rows with them; a number kept keeps its row, so a
        # re-sync never deletes and re-inserts the same (portal, phone, patient).
        wanted = list(dict.fromkeys(p for p in phones or () if p and p != self.phone_e164))
        kept = {row.phone_e164: row for row in self.phone_rows}
        self.phone_rows = [kept.get(p) or MisPatientPhone(phone_e164=p) for p in wanted]
        return phones


class MisPatientPhone(Base):
    """One of a patient's other numbers (`MisPatient.other_phones`) as a row: the caller pop-up finds a
    patient by any of their numbers from the (portal, phone, patient) index alone (migration 0018)."""

    __tablename__ = "mis_patient_phones"
    __table_args__ = (UniqueConstraint("portal_id", "phone_e164", "patient_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Indexed as the unique constraint's first column.
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("mis_patients.id", ondelete="CASCADE"), index=True)
    phone_e164: Mapped[str] = mapped_column(String(20))
    patient: Mapped[MisPatient] = relationship(back_populates="phone_rows")


@sa_event.listens_for(MisPatientPhone, "before_insert")
def _portal_of_patient(_mapper: Any, _connection: Any, row: MisPatientPhone) -> None:
    row.portal_id = row.patient.portal_id


class MisAppointment(Base):
    """The winning version of one MIS visit and what we decided for the CRM (kind, stage, deal)."""

    __tablename__ = "mis_appointments"
    __table_args__ = (
        UniqueConstraint("portal_id", "source", "source_id"),
        CheckConstraint(_in("status", _STATUSES), name="status"),
        CheckConstraint(_in("kind", APPOINTMENT_KINDS), name="kind"),
        Index("ix_mis_appointments_patient_start", "patient_id", "starts_at"),
        Index("ix_mis_appointments_portal_source_start", "portal_id", "source", "starts_at"),
        # Reports read a portal's visits by date whatever their source; status and patient make it a covering
        # index, so a year of visits is read from the index alone (migration 0011).
        Index("ix_mis_appointments_portal_start", "portal_id", "starts_at", "status", "patient_id"),
        # The same with the columns reports group by (migration 0015): a year's specialties, doctors, branches
        # and channels from the index alone, not from rows made wide by their JSON document.
        Index(
            "ix_mis_appointments_report",
            "portal_id",
            "starts_at",
            "status",
            "patient_id",
            "specialty",
            "doctor_name",
            "branch",
            "channel",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[int] = mapped_column(ForeignKey("mis_patients.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]
    version: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    # The appointment as the MIS last reported it (JSON of the dataclass), for notes and re-decisions.
    doc: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    # Copies of doc's keys (set with it, see _copy_doc); Text, as the MIS bounds none of them.
    doctor_name: Mapped[str | None] = mapped_column(Text)
    specialty: Mapped[str | None] = mapped_column(Text)
    branch: Mapped[str | None] = mapped_column(Text)
    card_number: Mapped[str | None] = mapped_column(Text)
    booked_by: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    waiting_list: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    kind: Mapped[str] = mapped_column(String(16))
    flags: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    # Names from the portal's stage map; None when the map has no entry (outcome `unmapped`).
    target: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    deal_id: Mapped[str | None] = mapped_column(String(64))
    mirrored_hash: Mapped[str | None] = mapped_column(String(64))
    # The stage we last put the deal in: a closed deal elsewhere was closed by a user and is never reopened.
    mirrored_target: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("doc")
    def _copy_doc(self, _key: str, doc: dict[str, Any]) -> dict[str, Any]:
        # Whoever sets the document (the sync, a void, a test's visit) sets its columns with it.
        for name, value in doc_columns(doc).items():
            setattr(self, name, value)
        return doc


def doc_columns(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The column values of an appointment document: blank text is None, as the reports count it."""
    doc = doc or {}
    values: dict[str, Any] = {}
    for name in DOC_COLUMNS:
        value = doc.get(name)
        text = str(value).strip() if value is not None else ""
        values[name] = text or None
    values["waiting_list"] = bool(doc.get("waiting_list"))
    return values


class MisSyncRun(Base):
    __tablename__ = "mis_sync_runs"
    __table_args__ = (
        # The same Helix file (by SHA-256) imports once; a second upload returns the first run.
        UniqueConstraint("portal_id", "file_sha256"),
        Index("ix_mis_sync_runs_portal_created", "portal_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    source: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str | None] = mapped_column(String(255))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    period_from: Mapped[date | None] = mapped_column(Date)
    period_to: Mapped[date | None] = mapped_column(Date)
    counts: Mapped[dict[str, int]] = mapped_column(JsonDoc, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class MisSyncRecord(Base):
    """One record's outcome in a run; kept 90 days and shown to the admin."""

    __tablename__ = "mis_sync_records"
    __table_args__ = (
        CheckConstraint(_in("outcome", SYNC_OUTCOMES), name="outcome"),
        Index("ix_mis_sync_records_run_outcome", "run_id", "outcome"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    run_id: Mapped[int] = mapped_column(ForeignKey("mis_sync_runs.id", ondelete="CASCADE"))
    row: Mapped[int | None] = mapped_column(Integer)
    source_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(20))
    field: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("mis_appointments.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MisTimetable(Base):
    """IDENT's last PostTimeTable snapshot (doctors, branches, intervals); a valid one replaces it whole."""

    __tablename__ = "mis_timetables"
    __table_args__ = (UniqueConstraint("portal_id", "source"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    source: Mapped[str] = mapped_column(String(32))
    doc: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MisLead(Base):
    """A lead of the intake pipeline offered to IDENT through GetTickets (IDENT pulls it as a заявка)."""

    __tablename__ = "mis_leads"
    __table_args__ = (
        UniqueConstraint("portal_id", "deal_id"),
        Index("ix_mis_leads_portal_created", "portal_id", "lead_created_at", "id"),
        # The caller pop-up finds a number's untaken inquiries (migration 0011).
        Index("ix_mis_leads_portal_phone", "portal_id", "phone_e164"),
        # For the foreign key's ON DELETE SET NULL (migration 0020): without it PostgreSQL scans every lead
        # for each visit deleted (a patient's or a portal's cascade): 2 000 visits 2.5 s, with it 35 ms.
        Index("ix_mis_leads_appointment_id", "appointment_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = _portal_fk()
    deal_id: Mapped[str] = mapped_column(String(64))
    lead_created_at: Mapped[datetime]
    name: Mapped[str] = mapped_column(String(300))
    phone_raw: Mapped[str | None] = mapped_column(String(64))
    phone_e164: Mapped[str | None] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    form_name: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    # utm_source … utm_content and referer, as IDENT's ticket names them.
    attribution: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    # The appointment that took this lead's deal (a booking continues the inquiry's deal, once).
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("mis_appointments.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
