"""Who is calling: every patient on an E.164 number, from our own database only (the telephony pop-up must
not wait on the CRM or the MIS), in one query whatever the history's size.

Families share a phone, so a number gives a list: each patient with their full name, card number, last
and next visit (date, doctor, status) and the deals their visits are in that are still open (pipeline,
stage). A patient is found by their main number or by one of their other numbers (the MIS's second and
third phones, `mis_patient_phones`), and `matched_phone` says which ("primary" or "other"). Intake leads on
that number not yet turned into a visit come apart as `open_leads`. An unknown number is `matches: []`, not
an error.

The pop-up asks on every ring, many at once, so the statement is built once and run through Core with
bound parameters: building and compiling them per call, and the ORM's row handling, cost several times
what the database does.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from connectors.phones import e164

from . import clock, fast_sql
from .appointments.settings import mis_settings
from .errors import DomainError
from .models import MisAppointment, MisLead, MisPatient, Portal
from .models.appointments import MisPatientPhone

if TYPE_CHECKING:
    from .apikeys import PortalRow

__all__ = ["UPCOMING", "CallerInvalid", "lookup_callers", "normalise_phone"]

UPCOMING = frozenset({"requested", "booked", "confirmed", "arrived"})

_visit = MisAppointment.__table__.c
_patient = MisPatient.__table__.c
_other = MisPatientPhone.__table__.c
_lead = MisLead.__table__.c

# Who is on the number: by the main phone (index portal_id, phone_e164, with the rowid or heap id) or by an
# other phone (index portal_id, phone_e164, patient_id: index-only). Sync keeps a main number out of the
# same patient's others, so a patient comes once.
_ON_NUMBER = union_all(
    select(_patient.id.label("patient_id"), literal_column("'primary'").label("matched")).where(
        _patient.portal_id == bindparam("portal_id"), _patient.phone_e164 == bindparam("phone")
    ),
    select(_other.patient_id, literal_column("'other'")).where(
        _other.portal_id == bindparam("portal_id"), _other.phone_e164 == bindparam("phone")
    ),
).subquery("on_number")

_PATIENTS_AND_VISITS = (
    select(
        _patient.id.label("patient_id"), _patient.name, _patient.alias_of_id, _patient.flags,
        _visit.id.label("visit_id"), _visit.starts_at.label("at"), _visit.status,
        _visit.doctor_name.label("doctor"), _visit.specialty, _visit.card_number,
        _visit.deal_id, _visit.target, _visit.mirrored_target, _ON_NUMBER.c.matched,
    )
    .select_from(_ON_NUMBER)
    .join(MisPatient.__table__, _patient.id == _ON_NUMBER.c.patient_id)
    # Index (patient_id, starts_at) per patient on the number.
    .outerjoin(MisAppointment.__table__, and_(_visit.patient_id == _patient.id, _visit.status != "void"))
)  # fmt: skip
# Inquiries on the number that no visit has taken yet, in the same columns: the rows without a patient_id.
_OPEN_LEADS = select(
    null(), _lead.name, null(), null(), null(), _lead.lead_created_at, null(), null(), null(), null(),
    _lead.deal_id, null(), null(), null(),
).where(
    _lead.portal_id == bindparam("portal_id"), _lead.phone_e164 == bindparam("phone"),
    _lead.appointment_id.is_(None),
)  # fmt: skip
_LOOKUP = union_all(_PATIENTS_AND_VISITS, _OPEN_LEADS)
"""One round trip. A patient with no visit is one row of NULL visit columns. Sorted in Python, not SQL:
an ORDER BY lead_created_at tempted SQLite into the date index over the phone's."""


class CallerInvalid(DomainError):
    code = "validation_failed"


def normalise_phone(raw: str | None) -> str:
    phone = e164(raw or "") if raw and len(raw) <= 40 else None
    if phone is None:
        raise CallerInvalid("phone", f"not a valid phone number: {raw!r}")
    return phone


def _visit_doc(row: Any, zone: ZoneInfo) -> dict[str, Any]:
    local = row.at.astimezone(zone)
    return {
        "appointment_id": row.visit_id,
        "starts_at": local.isoformat(timespec="minutes"),
        "date": local.date().isoformat(),
        "doctor": row.doctor,
        "specialty": row.specialty,
        "status": row.status,
    }


def lookup_callers(
    session: Session, portal: Portal | PortalRow, raw_phone: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """`portal`: the ORM object or its columns as a row (the API passes the row authentication read)."""
    phone = normalise_phone(raw_phone)
    now = now or clock.now_utc()
    zone = ZoneInfo(portal.timezone)
    settings = mis_settings(portal.settings)
    closed = {settings.lost_stage_id, settings.won_stage_id}
    rows = fast_sql.run(session, _LOOKUP, {"portal_id": portal.id, "phone": phone}).all()
    leads = sorted((row for row in rows if row.patient_id is None), key=lambda row: (row.at, row.deal_id))
    visits = sorted(
        (row for row in rows if row.patient_id is not None),
        key=lambda row: (row.name, row.patient_id, row.at is not None, row.at, row.visit_id),
    )
    # A second MIS id of the same person folds into the first when both are on the number.
    on_number = {row.patient_id for row in visits}
    # A patient on the number both ways (an old row from before sync kept them apart) counts as primary.
    primary = {row.patient_id for row in visits if row.matched == "primary"}
    matches: dict[int, dict[str, Any]] = {}
    for row in visits:
        if row.alias_of_id in on_number:
            continue
        match = matches.get(row.patient_id)
        if match is None:
            match = matches[row.patient_id] = {
                "patient_id": row.patient_id, "name": row.name, "card_number": None,
                "matched_phone": "primary" if row.patient_id in primary else "other",
                "shared_phone": "shared_phone" in (row.flags or []), "last_visit": None, "next_visit": None,
                "open_deals": {},
            }  # fmt: skip
        if row.visit_id is None:
            continue
        match["card_number"] = row.card_number or match["card_number"]
        if row.at <= now:
            match["last_visit"] = row
        elif match["next_visit"] is None and row.status in UPCOMING:
            match["next_visit"] = row
        stage = row.mirrored_target or row.target
        if row.deal_id and stage and stage.get("pipeline_id"):
            match["open_deals"][row.deal_id] = {
                "deal_id": row.deal_id, "pipeline": stage["pipeline_id"], "stage": stage.get("stage_id"),
            }  # fmt: skip
    family = len(matches) > 1
    for match in matches.values():
        match["shared_phone"] = family or match["shared_phone"]
        for key in ("last_visit", "next_visit"):
            if match[key] is not None:
                match[key] = _visit_doc(match[key], zone)
        match["open_deals"] = [d for d in match["open_deals"].values() if d["stage"] not in closed]
    intake = _intake_pipeline(portal)
    return {
        "phone": phone,
        "matches": list(matches.values()),
        "open_leads": [
            {
                "deal_id": deal_id,
                "pipeline": intake,
                "name": name,
                "created_at": created.astimezone(zone).isoformat(timespec="minutes"),
            }
            for deal_id, name, created in ((lead.deal_id, lead.name, lead.at) for lead in leads)
        ],
    }


def _intake_pipeline(portal: Portal) -> str | None:
    value = ((portal.settings or {}).get("mis") or {}).get("intake_pipeline_id")
    return value if isinstance(value, str) and value else None
