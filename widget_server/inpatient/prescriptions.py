"""Назначения: a drug and dose at fixed times of the clinic's day from one date to another, by a doctor.
A prescription is never edited: it is stopped (from now on) and a new one written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import local_today
from ..ledger import Actor
from ..models import InpatientStay, Portal, PortalUser, Prescription, utcnow
from .errors import InpatientConflict, InpatientError, InpatientNotFound
from .stays import current_stay

__all__ = ["PrescriptionDraft", "add_prescription", "doctor", "stop_prescription"]

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class PrescriptionDraft:
    drug: str
    dose: str
    times: tuple[str, ...]
    start_date: date
    end_date: date | None
    doctor_user_id: str


def doctor(session: Session, portal: Portal, user_id: str, field: str) -> PortalUser:
    """A CRM user with the doctor role in this portal."""
    user = session.scalar(
        select(PortalUser).where(PortalUser.portal_id == portal.id, PortalUser.crm_user_id == user_id)
    )
    if user is None or not user.active or "doctor" not in (user.roles or ()):
        raise InpatientError(field, f"user {user_id} is not a doctor of this clinic")
    return user


def add_prescription(
    session: Session, portal: Portal, deal_id: str, draft: PrescriptionDraft, actor: Actor
) -> Prescription:
    stay = current_stay(session, portal, deal_id, lock=True)
    if stay.status == "discharged":
        raise InpatientConflict("deal_id", "the patient is discharged")
    if not draft.drug.strip():
        raise InpatientError("drug", "must not be empty")
    if not draft.dose.strip():
        raise InpatientError("dose", "must not be empty")
    if not draft.times:
        raise InpatientError("times", "at least one time of day")
    for i, value in enumerate(draft.times):
        if not _TIME.match(value):
            raise InpatientError(f"times[{i}]", f"not a time of day HH:MM: {value!r}")
    if len(set(draft.times)) != len(draft.times):
        raise InpatientError("times", "a time of day is listed twice")
    if draft.start_date < stay.admission_date:
        raise InpatientError("start_date", "cannot be before the admission date")
    if draft.end_date is not None and draft.end_date < draft.start_date:
        raise InpatientError("end_date", "cannot be before the start date")
    prescriber = doctor(session, portal, draft.doctor_user_id, "doctor_user_id")
    prescription = Prescription(
        portal_id=portal.id,
        stay_id=stay.id,
        drug=draft.drug.strip(),
        dose=draft.dose.strip(),
        times=sorted(draft.times),
        start_date=draft.start_date,
        end_date=draft.end_date,
        doctor_user_id=prescriber.crm_user_id,
        doctor_name=prescriber.name,
        created_by=actor.label,
    )
    session.add(prescription)
    session.flush()
    return prescription


def stop_prescription(
    session: Session, portal: Portal, deal_id: str, prescription_id: int, reason: str | None, actor: Actor
) -> Prescription:
    stay = current_stay(session, portal, deal_id)
    prescription = _of_stay(session, stay, prescription_id)
    if prescription.stopped_at is not None:
        raise InpatientConflict("prescription_id", f"stopped already by {prescription.stopped_by}")
    prescription.stopped_at, prescription.stopped_by = utcnow(), actor.label
    prescription.stop_reason = (reason or "").strip() or None
    today = local_today(portal.timezone)
    if prescription.end_date is None or prescription.end_date > today:
        prescription.end_date = max(today, prescription.start_date)
    session.flush()
    return prescription


def _of_stay(session: Session, stay: InpatientStay, prescription_id: int) -> Prescription:
    prescription = session.get(Prescription, prescription_id)
    if prescription is None or prescription.stay_id != stay.id:
        raise InpatientNotFound("prescription_id", f"no prescription {prescription_id} on this stay")
    return prescription
