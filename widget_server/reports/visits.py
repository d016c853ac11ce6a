"""The visits a report or a payroll counts, each classified primary or repeat by the seed 004 rule.

A patient is *primary* at a visit when they have no completed visit before it, or their last completed
visit is at least six calendar months earlier by the clinic's local date (last visit 12.03 → primary again
from 12.09; a return after 7 months is primary, after 5 it is a repeat). Only completed visits are history:
a no-show or a cancellation does not make the next booking a repeat. One person is one `MisPatient`
or the patient it is an alias of; family members sharing a phone stay separate people.

Three queries whatever the period: the period's visits (only the document fields the caller asks for), the
last completed visit per patient in the six months before the period (an older one cannot make anyone a
repeat), and the portal's few patient aliases. Instants are read as epoch seconds and placed on local days
by the period's own local midnights, so a 12-month report over a large clinic does not parse 100 000
timestamps or ask zoneinfo 100 000 times.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, String, cast, extract, func, select
from sqlalchemy.orm import Session

from ..models import MisAppointment, MisPatient
from .periods import Period, add_months

__all__ = ["BOOKED_STATUSES", "DOC_FIELDS", "PRIMARY_AFTER_MONTHS", "Visit", "period_counts", "period_visits"]

PRIMARY_AFTER_MONTHS = 6
BOOKED_STATUSES = frozenset({"booked", "confirmed", "arrived", "completed", "cancelled", "no_show"})
"""A booking that was made: everything but a bare request and a visit the MIS withdrew (void)."""

DOC_FIELDS = {
    "specialty": "specialty",
    "branch": "branch",
    "doctor": "doctor_name",
    "booked_by": "booked_by",
    "channel": "channel",
}
"""Visit attribute → key of the appointment document the sync stores (`appointment_doc`)."""


class Visit(NamedTuple):
    # A NamedTuple, not a frozen dataclass: a year of a large clinic is 100 000+ of them, built in a loop.
    id: int
    person: int
    day: date
    status: str
    primary: bool
    specialty: str | None = None
    branch: str | None = None
    doctor: str | None = None
    booked_by: str | None = None
    waiting_list: bool = False
    channel: str | None = None
    deal_id: str | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _instant(session: Session, column: Any) -> tuple[Any, bool]:
    """An expression for the instant that sorts and bisects cheaply: on SQLite the stored naive-UTC text
    itself (its fixed format sorts as time does: no per-row strftime), elsewhere epoch seconds."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(column, String), True
    return cast(extract("epoch", column), BigInteger), False


def _sqlite_text(moment: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime stores (UtcDateTime hands it naive UTC).
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Days:
    """Local days first…last as indexes, with the UTC instant of each local midnight to bisect against."""

    def __init__(self, period: Period, first: date, as_text: bool) -> None:
        zone = period.zone
        self.first = first
        count = (period.end - first).days + 2
        self.days = [first + timedelta(days=i) for i in range(count)]
        midnights = [datetime.combine(d, time(0), zone) for d in self.days]
        self.begin = midnights[0].astimezone(UTC)
        self.keys: list[Any] = (
            [_sqlite_text(m) for m in midnights] if as_text else [int(m.timestamp()) for m in midnights]
        )
        # Index of the day a visit must reach to be primary again after a completed visit on day i.
        self.primary_from = [(add_months(d, PRIMARY_AFTER_MONTHS) - first).days for d in self.days]

    def index(self, instant: Any) -> int:
        return bisect_right(self.keys, instant) - 1


def _aliases(session: Session, portal_id: int) -> dict[int, int]:
    return dict(
        session.execute(  # type: ignore[arg-type]
            select(MisPatient.id, MisPatient.alias_of_id).where(
                MisPatient.portal_id == portal_id, MisPatient.alias_of_id.is_not(None)
            )
        ).all()
    )


def _hour(session: Session, column: Any, period: Period) -> tuple[Any, bool]:
    """The instant truncated to its UTC hour when every local midnight of the period falls on a UTC hour
    (whole-hour offsets, as in every Russian zone): then an hour's visits share one local day and can be
    counted together. Otherwise the instant itself."""
    zone = period.zone
    day, whole = period.start, True
    while day <= period.end + timedelta(days=1):
        offset = datetime.combine(day, time(0), zone).utcoffset() or timedelta(0)
        whole = whole and offset.total_seconds() % 3600 == 0
        day += timedelta(days=1)
    instant, as_text = _instant(session, column)
    if not whole:
        return instant, as_text
    if as_text:
        return func.substr(instant, 1, 13) + ":00:00.000000", True
    return cast(extract("epoch", func.date_trunc("hour", column)), BigInteger), False


def period_counts(
    session: Session, portal_id: int, period: Period, fields: Iterable[str], statuses: Iterable[str]
) -> dict[tuple[Any, ...], int]:
    """(local day, status, *the DOC_FIELDS asked for) → number of visits, counted by the database in
    hour groups: for the reports that need no person's history (specialisations, no-shows)."""
    names = list(fields)
    values = [MisAppointment.doc[DOC_FIELDS[name]].as_string() for name in names]
    hour, as_text = _hour(session, MisAppointment.starts_at, period)
    days = _Days(period, period.start, as_text)
    begin, finish = period.utc_bounds()
    counts: dict[tuple[Any, ...], int] = {}
    for at, status, *rest in session.connection().execute(
        select(hour, MisAppointment.status, *values, func.count())
        .where(
            MisAppointment.portal_id == portal_id,
            MisAppointment.starts_at >= begin,
            MisAppointment.starts_at < finish,
            MisAppointment.status.in_(sorted(set(statuses) & BOOKED_STATUSES)),
        )
        .group_by(hour, MisAppointment.status, *values)
    ):
        *found, count = rest
        key = (days.days[bisect_right(days.keys, at) - 1], status, *(_text(v) for v in found))
        counts[key] = counts.get(key, 0) + count
    return counts


def period_visits(
    session: Session,
    portal_id: int,
    period: Period,
    fields: Iterable[str] = (),
    statuses: Iterable[str] = BOOKED_STATUSES,
) -> list[Visit]:
    """Every visit in `statuses` (default: every booking made) whose local date is in the period, in time
    order, with the `fields` asked for (names of DOC_FIELDS, "waiting_list", "deal_id"); the others stay
    None/False. Whatever `statuses` leaves out, primary is decided from the completed history."""
    wanted = list(dict.fromkeys(fields))
    history_first = add_months(period.start, -PRIMARY_AFTER_MONTHS)
    instant, as_text = _instant(session, MisAppointment.starts_at)
    days = _Days(period, history_first, as_text)
    begin, finish = period.utc_bounds()
    doc = MisAppointment.doc
    extra: list[Any] = []
    for name in wanted:
        if name in DOC_FIELDS:
            extra.append(doc[DOC_FIELDS[name]].as_string())
        elif name == "waiting_list":
            extra.append(doc["waiting_list"].as_boolean())
        elif name == "deal_id":
            extra.append(MisAppointment.deal_id)
        else:
            raise ValueError(f"unknown visit field {name!r}")
    # Through Core: the ORM's per-row result handling was a third of a 12-month report's time.
    connection = session.connection()
    rows = connection.execute(
        select(MisAppointment.id, MisAppointment.patient_id, instant, MisAppointment.status, *extra)
        .where(
            MisAppointment.portal_id == portal_id,
            MisAppointment.starts_at >= begin,
            MisAppointment.starts_at < finish,
            MisAppointment.status.in_(sorted(set(statuses) & BOOKED_STATUSES)),
        )
        .order_by(MisAppointment.starts_at, MisAppointment.id)
    ).all()
    aliases = _aliases(session, portal_id)
    last: dict[int, int] = {}
    for patient, latest in connection.execute(
        select(MisAppointment.patient_id, func.max(instant))
        .where(
            MisAppointment.portal_id == portal_id,
            MisAppointment.starts_at >= days.begin,
            MisAppointment.starts_at < begin,
            MisAppointment.status == "completed",
        )
        .group_by(MisAppointment.patient_id)
    ):
        person = aliases.get(patient, patient)
        day = days.index(latest)
        if day > last.get(person, -1):
            last[person] = day
    primary_from = days.primary_from
    calendar = days.days
    keys = days.keys
    visits: list[Visit] = []
    append = visits.append
    for vid, patient, at, status, *extras in rows:
        person = aliases.get(patient, patient) if aliases else patient
        day = bisect_right(keys, at) - 1
        previous = last.get(person)
        primary = previous is None or day >= primary_from[previous]
        if status == "completed":
            last[person] = day
        if not wanted:
            append(Visit(vid, person, calendar[day], status, primary))
            continue
        values = dict(zip(wanted, extras, strict=True))
        for name in DOC_FIELDS:
            if name in values:
                values[name] = _text(values[name])
        if "waiting_list" in values:
            values["waiting_list"] = bool(values["waiting_list"])
        append(Visit(vid, person, calendar[day], status, primary, **values))
    return visits
