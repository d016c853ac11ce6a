"""Who is calling: every patient on an E.164 number, from our own database only (the telephony pop-up must
not wait on the CRM or the MIS), in at most three queries whatever the history's size.

Families share a phone, so a number gives a list: each patient with their full name, card number, last
and next visit (date, doctor, status) and the deals their visits are in that are still open (pipeline,
stage). Intake leads on that number not yet turned into a visit come apart as `open_leads`. An unknown
number is `matches: []`, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.phones import e164

from . import clock
from .appointments.settings import mis_settings
from .errors import DomainError
from .models import MisAppointment, MisLead, MisPatient, Portal

__all__ = ["UPCOMING", "CallerInvalid", "lookup_callers", "normalise_phone"]

UPCOMING = frozenset({"requested", "booked", "confirmed", "arrived"})


class CallerInvalid(DomainError):
    code = "validation_failed"


def normalise_phone(raw: str | None) -> str:
    phone = e164(raw or "") if raw and len(raw) <= 40 else None
    if phone is None:
        raise CallerInvalid("phone", f"not a valid phone number: {raw!r}")
    return phone


@dataclass
class _Patient:
    row: Any
    card_number: str | None = None
    last: Any = None
    next: Any = None


def _visit(row: Any, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "appointment_id": row.id,
        "starts_at": row.starts_at.astimezone(zone).isoformat(timespec="minutes"),
        "date": row.starts_at.astimezone(zone).date().isoformat(),
        "doctor": row.doctor,
        "specialty": row.specialty,
        "status": row.status,
    }


def lookup_callers(
    session: Session, portal: Portal, raw_phone: str | None, now: datetime | None = None
) -> dict[str, Any]:
    phone = normalise_phone(raw_phone)
    now = now or clock.now_utc()
    zone = ZoneInfo(portal.timezone)
    settings = mis_settings(portal.settings)
    closed = {settings.lost_stage_id, settings.won_stage_id}
    # 1: the patients on the number (index portal_id, phone_e164).
    patients = {
        row.id: _Patient(row)
        for row in session.execute(
            select(MisPatient.id, MisPatient.name, MisPatient.alias_of_id, MisPatient.flags)
            .where(MisPatient.portal_id == portal.id, MisPatient.phone_e164 == phone)
            .order_by(MisPatient.name, MisPatient.id)
        )
    }
    # A second MIS id of the same person folds into the first when both are on the number.
    for pid in [p for p, v in patients.items() if v.row.alias_of_id in patients]:
        del patients[pid]
    deals: dict[int, dict[str, dict[str, Any]]] = {pid: {} for pid in patients}
    if patients:
        doc = MisAppointment.doc
        # 2: their visits (index patient_id, starts_at), oldest first so later ones win.
        for row in session.execute(
            select(
                MisAppointment.id, MisAppointment.patient_id, MisAppointment.starts_at, MisAppointment.status,
                doc["doctor_name"].as_string().label("doctor"),
                doc["specialty"].as_string().label("specialty"),
                doc["card_number"].as_string().label("card_number"), MisAppointment.deal_id,
                MisAppointment.target, MisAppointment.mirrored_target,
            )
            .where(MisAppointment.patient_id.in_(list(patients)), MisAppointment.status != "void")
            .order_by(MisAppointment.starts_at, MisAppointment.id)
        ):  # fmt: skip
            who = patients[row.patient_id]
            who.card_number = row.card_number or who.card_number
            if row.starts_at <= now:
                who.last = row
            elif who.next is None and row.status in UPCOMING:
                who.next = row
            stage = row.mirrored_target or row.target
            if row.deal_id and stage and stage.get("pipeline_id"):
                deals[row.patient_id][row.deal_id] = {
                    "deal_id": row.deal_id, "pipeline": stage["pipeline_id"], "stage": stage.get("stage_id"),
                }  # fmt: skip
    # 3: inquiries on the number that no visit has taken yet.
    # Sorted here, not in SQL: an ORDER BY lead_created_at tempts SQLite into the date index over the phone's.
    leads = sorted(
        session.execute(
            select(MisLead.deal_id, MisLead.name, MisLead.lead_created_at).where(
                MisLead.portal_id == portal.id, MisLead.phone_e164 == phone, MisLead.appointment_id.is_(None)
            )
        ).all(),
        key=lambda lead: (lead.lead_created_at, lead.deal_id),
    )
    intake = _intake_pipeline(portal)
    return {
        "phone": phone,
        "matches": [
            {
                "patient_id": pid,
                "name": who.row.name,
                "card_number": who.card_number,
                "shared_phone": len(patients) > 1 or "shared_phone" in (who.row.flags or []),
                "last_visit": _visit(who.last, zone) if who.last is not None else None,
                "next_visit": _visit(who.next, zone) if who.next is not None else None,
                "open_deals": [d for d in deals[pid].values() if d["stage"] not in closed],
            }
            for pid, who in patients.items()
        ],
        "open_leads": [
            {
                "deal_id": deal_id,
                "pipeline": intake,
                "name": name,
                "created_at": created.astimezone(zone).isoformat(timespec="minutes"),
            }
            for deal_id, name, created in leads
        ],
    }


def _intake_pipeline(portal: Portal) -> str | None:
    value = ((portal.settings or {}).get("mis") or {}).get("intake_pipeline_id")
    return value if isinstance(value, str) and value else None
