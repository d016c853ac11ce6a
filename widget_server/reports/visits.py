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
from itertools import pairwise
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Date, String, case, cast, extract, func, literal_column, select
from sqlalchemy.orm import Session

from ..models import MisAppointment, MisLead, MisPatient
from .periods import Period, add_months

__all__ = [
    "BOOKED_STATUSES",
    "PRIMARY_AFTER_MONTHS",
    "Visit",
    "as_date",
    "booked_counts",
    "classified_visits",
    "lead_counts",
    "period_counts",
    "period_visits",
    "primary_counts",
    "primary_firsts",
]  # fmt: skip

PRIMARY_AFTER_MONTHS = 6
BOOKED_STATUSES = frozenset({"booked", "confirmed", "arrived", "completed", "cancelled", "no_show"})
"""A booking that was made: everything but a bare request and a visit the MIS withdrew (void)."""

_COLUMNS = {
    "specialty": MisAppointment.specialty,
    "branch": MisAppointment.branch,
    "doctor": MisAppointment.doctor_name,
    "booked_by": MisAppointment.booked_by,
    "channel": MisAppointment.channel,
    "waiting_list": MisAppointment.waiting_list,
    "deal_id": MisAppointment.deal_id,
}
"""Visit attribute → the column holding it (the document's values, trimmed, blank as NULL: migration 0015)."""


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


def _offsets(period: Period, begin: datetime, finish: datetime) -> list[tuple[datetime, timedelta]]:
    """The zone's UTC offsets over [begin, finish): (from this instant, offset), first one from begin.
    Sampled daily, each change then narrowed to the minute (zones move their clocks on minute bounds)."""
    zone = period.zone

    def offset(at: datetime) -> timedelta:
        return at.astimezone(zone).utcoffset() or timedelta(0)

    found = [(begin, offset(begin))]
    day = begin
    while day < finish:
        following = min(day + timedelta(days=1), finish)
        if offset(following) != found[-1][1]:
            low, high = day, following  # offset(low) is the old one, offset(high) the new one
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    break
                if offset(middle) == found[-1][1]:
                    low = middle
                else:
                    high = middle
            found.append((high, offset(high)))
        day = following
    return found


def _local_day(session: Session, column: Any, period: Period, begin: datetime, finish: datetime) -> Any:
    """An SQL expression for the instant's local date in the portal's zone: PostgreSQL knows the zone;
    SQLite shifts by the offset in force, one CASE branch per clock change inside the period."""
    if session.get_bind().dialect.name != "sqlite":
        return cast(func.timezone(period.timezone, column), Date)

    def shifted(offset: timedelta) -> Any:
        return func.date(column, f"{int(offset.total_seconds()):+d} seconds")

    offsets = _offsets(period, begin, finish)
    if len(offsets) == 1:
        return shifted(offsets[0][1])
    whens = [(column < until, shifted(offset)) for (_, offset), (until, _) in pairwise(offsets)]
    return case(*whens, else_=shifted(offsets[-1][1]))


def _bucket_start(session: Session, day: Any, group: str) -> Any:
    """The first local day of the day's report bucket (ISO week from Monday, month from the 1st)."""
    if group == "day":
        return day
    if session.get_bind().dialect.name == "sqlite":
        return func.date(day, "-6 days", "weekday 1") if group == "week" else func.date(day, "start of month")
    return cast(func.date_trunc("week" if group == "week" else "month", day), Date)


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def period_counts(
    session: Session, portal_id: int, period: Period, fields: Iterable[str], statuses: Iterable[str]
) -> dict[tuple[Any, ...], int]:
    """(first local day of the report bucket, status, *the visit columns asked for) → number of visits,
    counted by the database: for the reports that need no person's history (specialisations, no-shows)."""
    values = [_COLUMNS[name] for name in fields]
    begin, finish = period.utc_bounds()
    bucket = _bucket_start(
        session, _local_day(session, MisAppointment.starts_at, period, begin, finish), period.group
    )
    counts: dict[tuple[Any, ...], int] = {}
    for day, status, *rest in session.connection().execute(
        select(bucket, MisAppointment.status, *values, func.count())
        .where(
            MisAppointment.portal_id == portal_id,
            MisAppointment.starts_at >= begin,
            MisAppointment.starts_at < finish,
            MisAppointment.status.in_(sorted(set(statuses) & BOOKED_STATUSES)),
        )
        .group_by(bucket, MisAppointment.status, *values)
    ):
        *found, count = rest
        key = (as_date(day), status, *found)
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
    order, with the `fields` asked for (names of _COLUMNS); the others stay
    None/False. Whatever `statuses` leaves out, primary is decided from the completed history."""
    wanted = list(dict.fromkeys(fields))
    history_first = add_months(period.start, -PRIMARY_AFTER_MONTHS)
    instant, as_text = _instant(session, MisAppointment.starts_at)
    days = _Days(period, history_first, as_text)
    begin, finish = period.utc_bounds()
    unknown = [name for name in wanted if name not in _COLUMNS]
    if unknown:
        raise ValueError(f"unknown visit field {unknown[0]!r}")
    extra = [_COLUMNS[name] for name in wanted]
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
        append(Visit(vid, person, calendar[day], status, primary, **dict(zip(wanted, extras, strict=True))))
    return visits


def _months_later(session: Session, day: Any, months: int) -> Any:
    """The SQL twin of `add_months`: the same day `months` later, the 31st clamped to a shorter month's end.
    PostgreSQL's interval arithmetic clamps; SQLite's '+N months' rolls over (31.08 + 6 → 03.03), so a
    changed day of month is replaced by the last day of the month meant."""
    if session.get_bind().dialect.name != "sqlite":
        return cast(day + literal_column(f"interval '{int(months)} months'"), Date)
    rolled = func.date(day, f"+{int(months)} months")
    return case(
        (func.strftime("%d", rolled) == func.strftime("%d", day), rolled),
        else_=func.date(day, "start of month", f"+{int(months) + 1} months", "-1 day"),
    )


def classified_visits(
    session: Session, portal_id: int, period: Period, fields: Iterable[str] = (),
    statuses: Iterable[str] = BOOKED_STATUSES,
) -> Any:  # fmt: skip
    """`period_visits` as an SQL subquery for the database to group and count: one row per visit in
    `statuses` whose local date is in the period, with columns id, person, starts_at, status, bucket (first
    local day of its report bucket), is_primary (1/0, the seed 004 rule) and the `fields` asked for; for
    completed visits only, first_in_bucket and first_in_period too (1/0: the person's first visit there).
    One window (a sort by person and time) gives each visit the last completed local day before it."""
    wanted = list(dict.fromkeys(fields))
    unknown = [name for name in wanted if name not in _COLUMNS]
    if unknown:
        raise ValueError(f"unknown visit field {unknown[0]!r}")
    shown = sorted(set(statuses) & BOOKED_STATUSES)
    begin, finish = period.utc_bounds()
    history_begin = datetime.combine(
        add_months(period.start, -PRIMARY_AFTER_MONTHS), time(0), period.zone
    ).astimezone(UTC)
    starts = MisAppointment.starts_at
    day = _local_day(session, starts, period, history_begin, finish).label("day")
    person: Any = MisAppointment.patient_id
    source: Any = MisAppointment.__table__
    if _aliases(session, portal_id):
        alias = MisPatient.__table__.alias("alias")
        source = source.outerjoin(alias, alias.c.id == MisAppointment.patient_id)
        person = func.coalesce(alias.c.alias_of_id, MisAppointment.patient_id)
    visits = (
        select(
            MisAppointment.id,
            person.label("person"),
            starts.label("starts_at"),
            MisAppointment.status,
            day,
            *[_COLUMNS[name].label(name) for name in wanted],
        )
        .select_from(source)
        .where(
            MisAppointment.portal_id == portal_id,
            starts >= history_begin,
            starts < finish,
            # The history (completed visits) and the visits shown, as `period_visits` reads them.
            ((starts < begin) & (MisAppointment.status == "completed"))
            | ((starts >= begin) & MisAppointment.status.in_(shown)),
        )
        .subquery("visits")
    )
    v = visits.c
    by_person = {"partition_by": v.person, "order_by": (v.starts_at, v.id)}
    completed_only = shown == ["completed"]
    if completed_only:
        # Every row is a completed visit: the last one before is the previous row, one window (SQLite's
        # windows cost a sort each: two made a 12-month report slower than the Python loop they replace).
        last = func.lag(v.day).over(**by_person)
    else:
        # A running max: days only grow along a person's visits.
        last = func.max(case((v.status == "completed", v.day))).over(**by_person, rows=(None, -1))
    windowed = select(
        v.id, v.person, v.starts_at, v.status, v.day, last.label("last_day"), *[v[name] for name in wanted]
    ).subquery("windowed")
    w = windowed.c
    bucket = _bucket_start(session, w.day, period.group)
    primary = w.last_day.is_(None) | (w.day >= _months_later(session, w.last_day, PRIMARY_AFTER_MONTHS))
    as_int = lambda condition: case((condition, 1), else_=0)  # noqa: E731
    columns = [
        w.id,
        w.person,
        w.starts_at,
        w.status,
        bucket.label("bucket"),
        as_int(primary).label("is_primary"),
    ]
    if completed_only:
        # The previous visit is history when its day is before the period's first (a history visit may
        # fall in the period's first week, so its bucket alone does not tell).
        first_day = period.start.isoformat() if session.get_bind().dialect.name == "sqlite" else period.start
        first_in_period = w.last_day.is_(None) | (w.last_day < first_day)
        first_in_bucket = first_in_period | (_bucket_start(session, w.last_day, period.group) != bucket)
        columns += [
            as_int(first_in_bucket).label("first_in_bucket"),
            as_int(first_in_period).label("first_in_period"),
        ]
    return select(*columns, *[w[name] for name in wanted]).where(w.starts_at >= begin).subquery("classified")


def lead_counts(session: Session, portal_id: int, period: Period) -> Any:
    """(first local day of the report bucket, number of intake leads created): the conversion's calls."""
    begin, finish = period.utc_bounds()
    created = MisLead.lead_created_at
    bucket = _bucket_start(session, _local_day(session, created, period, begin, finish), period.group)
    return (
        select(bucket, func.count())
        .where(MisLead.portal_id == portal_id, created >= begin, created < finish)
        .group_by(bucket)
    )


# --- what the reports count ------------------------------------------------------------------------------
# PostgreSQL groups the classified subquery itself. SQLite's window sorts (and a date function per row) made
# that slower than reading the visits once in time order and counting as they pass, so on SQLite the three
# tallies walk the rows: one tuple per visit, never a `Visit`.


def _bucket_day(day: date, group: str) -> date:
    if group == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday()) if group == "week" else day


def _walk(
    session: Session, portal_id: int, period: Period, fields: list[str], statuses: Iterable[str]
) -> Iterable[tuple[Any, ...]]:
    """SQLite: (id, bucket start, status, primary, first in bucket, first in period, *fields) per visit
    shown, in time order; `first…` are about the previous visit read, so mean what they say for completed
    visits only (as `classified_visits`)."""
    shown = sorted(set(statuses) & BOOKED_STATUSES)
    instant, _ = _instant(session, MisAppointment.starts_at)
    days = _Days(period, add_months(period.start, -PRIMARY_AFTER_MONTHS), True)
    begin, finish = period.utc_bounds()
    starts, status = MisAppointment.starts_at, MisAppointment.status
    rows = session.connection().execute(
        select(MisAppointment.id, MisAppointment.patient_id, instant, status, *[_COLUMNS[f] for f in fields])
        .where(
            MisAppointment.portal_id == portal_id,
            starts >= days.begin,
            starts < finish,
            ((starts < begin) & (status == "completed")) | ((starts >= begin) & status.in_(shown)),
        )
        .order_by(starts, MisAppointment.id)
    )
    aliases = _aliases(session, portal_id)
    keys, primary_from = days.keys, days.primary_from
    first = (period.start - days.first).days
    buckets = [_bucket_day(d, period.group) for d in days.days]
    last: dict[int, int] = {}  # person → index of the day of their last completed visit
    previous: dict[int, int] = {}  # person → index of the day of their previous visit in the period
    for vid, patient, at, state, *extra in rows:
        person = aliases.get(patient, patient) if aliases else patient
        day = bisect_right(keys, at) - 1
        before = last.get(person)
        if state == "completed":
            last[person] = day
        if day < first:
            continue
        prior = previous.get(person)
        previous[person] = day
        in_period = prior is None
        yield (
            vid, buckets[day], state, before is None or day >= primary_from[before],
            in_period or buckets[prior] != buckets[day], in_period, *extra,
        )  # fmt: skip


def primary_counts(session: Session, portal_id: int, period: Period) -> dict[date, list[int]]:
    """Bucket start → [primary, repeat] people (each by their first completed visit in the bucket), then
    the same by their first completed visit in the whole period (the total row)."""
    counts: dict[date, list[int]] = {}
    if session.get_bind().dialect.name == "sqlite":
        for _, bucket, _, primary, in_bucket, in_period in _walk(
            session, portal_id, period, [], ("completed",)
        ):
            if in_bucket:
                tally = counts.get(bucket) or counts.setdefault(bucket, [0, 0, 0, 0])
                tally[not primary] += 1
                if in_period:
                    tally[2 + (not primary)] += 1
        return counts
    c = classified_visits(session, portal_id, period, statuses=("completed",)).c
    counted = lambda first, primary: func.sum(case((first == 1, primary), else_=0))  # noqa: E731
    for bucket, *numbers in session.connection().execute(
        select(
            c.bucket,
            counted(c.first_in_bucket, c.is_primary),
            counted(c.first_in_bucket, 1 - c.is_primary),
            counted(c.first_in_period, c.is_primary),
            counted(c.first_in_period, 1 - c.is_primary),
        ).group_by(c.bucket)
    ):
        counts[as_date(bucket)] = [int(n or 0) for n in numbers]
    return counts


def primary_firsts(
    session: Session, portal_id: int, period: Period, fields: list[str]
) -> list[tuple[Any, ...]]:
    """(visit id, bucket start, *fields) of each person's first completed visit in a bucket, when primary."""
    if session.get_bind().dialect.name == "sqlite":
        return [
            (vid, bucket, *extra)
            for vid, bucket, _, primary, in_bucket, _, *extra in _walk(
                session, portal_id, period, fields, ("completed",)
            )
            if primary and in_bucket
        ]
    c = classified_visits(session, portal_id, period, fields, statuses=("completed",)).c
    query = select(c.id, c.bucket, *[c[f] for f in fields]).where(c.first_in_bucket == 1, c.is_primary == 1)
    return [(vid, as_date(bucket), *extra) for vid, bucket, *extra in session.connection().execute(query)]


def booked_counts(session: Session, portal_id: int, period: Period) -> dict[date, list[int]]:
    """Bucket start → [primary visits booked (every booking made), of them completed]."""
    counts: dict[date, list[int]] = {}
    if session.get_bind().dialect.name == "sqlite":
        for _, bucket, state, primary, _, _ in _walk(session, portal_id, period, [], BOOKED_STATUSES):
            if primary:
                tally = counts.get(bucket) or counts.setdefault(bucket, [0, 0])
                tally[0] += 1
                tally[1] += state == "completed"
        return counts
    c = classified_visits(session, portal_id, period).c
    for bucket, primary, came in session.connection().execute(
        select(
            c.bucket,
            func.sum(c.is_primary),
            func.sum(case(((c.is_primary == 1) & (c.status == "completed"), 1), else_=0)),
        ).group_by(c.bucket)
    ):
        counts[as_date(bucket)] = [int(primary or 0), int(came or 0)]
    return counts
