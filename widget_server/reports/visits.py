"""The visits a report or a payroll counts, each classified primary or repeat by the seed 004 rule.

A patient is *primary* at a visit when they have no completed visit before it, or their last completed
visit is at least six calendar months earlier by the clinic's local date (last visit 12.03 → primary again
from 12.09; a return after 7 months is primary, after 5 it is a repeat). Only completed visits are history:
a no-show or a cancellation does not make the next booking a repeat. One person is one `MisPatient`
or the patient it is an alias of; family members sharing a phone stay separate people.

Two queries whatever the period: the period's visits, and each person's last completed visit before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ..models import MisAppointment, MisPatient
from .periods import Period, add_months

__all__ = ["BOOKED_STATUSES", "PRIMARY_AFTER_MONTHS", "Visit", "period_visits"]

PRIMARY_AFTER_MONTHS = 6
BOOKED_STATUSES = frozenset({"booked", "confirmed", "arrived", "completed", "cancelled", "no_show"})
"""A booking that was made: everything but a bare request and a visit the MIS withdrew (void)."""


@dataclass(frozen=True, slots=True)
class Visit:
    id: int
    person: int
    day: date
    status: str
    primary: bool
    specialty: str | None
    branch: str | None
    doctor: str | None
    booked_by: str | None
    waiting_list: bool
    channel: str | None
    deal_id: str | None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def period_visits(session: Session, portal_id: int, period: Period) -> list[Visit]:
    """Every booked visit (see BOOKED_STATUSES) whose local date is in the period, in date order."""
    begin, finish = period.utc_bounds()
    person = func.coalesce(MisPatient.alias_of_id, MisPatient.id)
    doc = MisAppointment.doc
    rows = session.execute(
        select(
            MisAppointment.id,
            person,
            MisAppointment.starts_at,
            MisAppointment.status,
            doc["specialty"].as_string(),
            doc["branch"].as_string(),
            doc["doctor_name"].as_string(),
            doc["booked_by"].as_string(),
            doc["waiting_list"].as_boolean(),
            doc["channel"].as_string(),
            MisAppointment.deal_id,
        )
        .join(MisPatient, MisPatient.id == MisAppointment.patient_id)
        .where(
            MisAppointment.portal_id == portal_id,
            MisAppointment.starts_at >= begin,
            MisAppointment.starts_at < finish,
            MisAppointment.status.in_(BOOKED_STATUSES),
        )
        .order_by(MisAppointment.starts_at, MisAppointment.id)
    ).all()
    last_before: dict[int, datetime] = dict(
        session.execute(  # type: ignore[arg-type]
            select(person, func.max(MisAppointment.starts_at))
            .join(MisPatient, MisPatient.id == MisAppointment.patient_id)
            .where(
                and_(
                    MisAppointment.portal_id == portal_id,
                    MisAppointment.starts_at < begin,
                    MisAppointment.status == "completed",
                )
            )
            .group_by(person)
        ).all()
    )
    zone = period.zone
    last_day: dict[int, date | None] = {}
    visits: list[Visit] = []
    for vid, who, starts_at, status, specialty, branch, doctor, booked_by, waiting, channel, deal in rows:
        day = starts_at.astimezone(zone).date()
        if who in last_day:
            previous = last_day[who]
        else:
            before = last_before.get(who)
            previous = before.astimezone(zone).date() if before is not None else None
        primary = previous is None or day >= add_months(previous, PRIMARY_AFTER_MONTHS)
        if status == "completed":
            last_day[who] = day
        else:
            last_day.setdefault(who, previous)
        visits.append(
            Visit(
                vid, who, day, status, primary, _text(specialty), _text(branch), _text(doctor),
                _text(booked_by), bool(waiting), _text(channel), deal,
            )
        )  # fmt: skip
    return visits

