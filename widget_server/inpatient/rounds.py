"""Medication rounds: which doses are due now, marking one given or not given (append-only, corrections
point at what they correct), and escalating a dose nobody marked.

A dose has no row until someone marks it: its id is `<prescription id>-<UTC due time>` (e.g.
`17-20261124T0600Z`), computed from the schedule. So the nurse's list is computed, not materialised,
and nothing needs to be generated ahead of time for 2,000 patients.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple, TypedDict
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, String, Text, cast, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..ledger import Actor
from ..models import (
    Building,
    InpatientStay,
    Portal,
    Prescription,
    RoundEscalation,
    RoundRecord,
    Ward,
    utcnow,
)
from .catalogue import NEXT_STEPS, REASONS
from .errors import InpatientConflict, InpatientError, InpatientNotFound
from .mirror import queue_note, queue_task, task_user
from .settings import inpatient_settings

__all__ = [
    "DueRound",
    "ScheduledDose",
    "due_rounds",
    "escalate_overdue",
    "parse_round_id",
    "record_round",
    "round_id",
    "slots_between",
]

_ROUND_ID = re.compile(r"^(\d{1,18})-(\d{8}T\d{4})Z$")


def round_id(prescription_id: int, due_at: datetime) -> str:
    return f"{prescription_id}-{due_at.astimezone(UTC):%Y%m%dT%H%M}Z"


def parse_round_id(value: str) -> tuple[int, datetime]:
    match = _ROUND_ID.match(value)
    if match is None:
        raise InpatientNotFound(
            "round_id", f"not a round id: {value!r} (expected <prescription>-<YYYYMMDDTHHMM>Z)"
        )
    try:
        due_at = datetime.strptime(match.group(2), "%Y%m%dT%H%M").replace(tzinfo=UTC)
    except ValueError:
        raise InpatientNotFound("round_id", f"not a date and time: {match.group(2)!r}") from None
    return int(match.group(1)), due_at


class ScheduledDose(NamedTuple):
    """A prescription as the schedule needs it (a tuple: thousands are built per request)."""

    prescription_id: int
    times: tuple[str, ...]
    start_date: date
    end_date: date | None
    stopped_at: datetime | None


class _SlotClock:
    """UTC instants of local (day, "HH:MM") pairs, each computed once: 12,000 prescriptions share a few
    dozen distinct times, and the zone arithmetic is the costly part."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.cache: dict[tuple[date, str], datetime] = {}

    def at(self, day: date, hhmm: str) -> datetime:
        key = (day, hhmm)
        found = self.cache.get(key)
        if found is None:
            local = datetime.combine(day, time(int(hhmm[:2]), int(hhmm[3:])), self.zone)
            found = self.cache[key] = local.astimezone(UTC)
        return found


class _Schedules:
    """The due instants of (times, from, to) schedules in one window, each worked out once: thousands of
    prescriptions share a few dozen schedules, and the zone arithmetic is the costly part."""

    def __init__(self, timezone: str, start: datetime, end: datetime) -> None:
        self.clock = _SlotClock(timezone)
        self.start, self.end = start, end
        first_day = start.astimezone(self.clock.zone).date()
        last_day = end.astimezone(self.clock.zone).date()
        self.days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        self.known: dict[object, list[datetime]] = {}

    def dues(self, times: tuple[str, ...], start_date: date, end_date: date | None) -> list[datetime]:
        start, end, at = self.start, self.end, self.clock.at
        return [
            due
            for day in self.days
            if start_date <= day and (end_date is None or day <= end_date)
            for hhmm in times
            if start <= (due := at(day, hhmm)) <= end
        ]


def slots_between(
    doses: Iterable[ScheduledDose], timezone: str, start: datetime, end: datetime
) -> list[tuple[int, datetime]]:
    """(prescription id, due instant) for every scheduled dose with start ≤ due ≤ end, in due order."""
    schedules = _Schedules(timezone, start, end)
    out: list[tuple[int, datetime]] = []
    for dose in doses:
        signature = (dose.times, dose.start_date, dose.end_date)
        dues = schedules.known.get(signature)
        if dues is None:
            dues = schedules.known[signature] = schedules.dues(*signature)
        out.extend(
            (dose.prescription_id, due) for due in dues if dose.stopped_at is None or due < dose.stopped_at
        )
    out.sort(key=itemgetter(1))
    return out


class DueRound(TypedDict):
    """One unmarked dose. A dict of plain values, which the garbage collector does not track: thousands of
    objects alive through a request (a class instance, even a named tuple, stays tracked) were promoted to
    its oldest generation and set off a full collection every few calls, 60 ms over every object of the
    process: that was the p95, 2.5 times the median."""

    round_id: str
    prescription_id: int
    stay_id: int
    deal_id: str
    building_id: int
    ward: str
    bed: int
    drug: str
    dose: str
    due_at: datetime
    overdue: bool


def _plain_rows(connection: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
    """The driver's own tuples instead of SQLAlchemy's Row objects (the query needs no result processing:
    text, integers and strings only). A Row stays tracked by the garbage collector for life, so the
    12,000 rows of one call survived into its oldest generation and set off full collections over every
    object in the process: those were the p95, 2.5 times the median in CPU time. Plain tuples of plain
    values are untracked at the first young collection."""
    result = connection.execute(query)
    try:
        return result.cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        result.close()


def _json(raw: object) -> object:
    return json.loads(raw) if isinstance(raw, str) else raw


def _day(raw: object) -> date | None:
    if raw is None or isinstance(raw, date):
        return raw
    return date.fromisoformat(str(raw))


def _instant(raw: object) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(raw)).replace(tzinfo=UTC)


def due_rounds(
    session: Session,
    portal: Portal,
    at: datetime,
    building_id: int | None = None,
    *,
    ahead_min: int | None = None,
) -> list[DueRound]:
    """What the nurses must do at `at`: unmarked doses from `lookback_hours` ago up to `due_ahead_min`
    ahead, oldest first, each flagged overdue once past `overdue_after_min`."""
    settings = inpatient_settings(portal)
    start = at - timedelta(hours=settings.lookback_hours)
    end = at + timedelta(minutes=settings.due_ahead_min if ahead_min is None else ahead_min)
    query = select(
        Prescription.id,
        # As text on both databases (psycopg would decode jsonb and dates row by row): the text is
        # the schedule's cache key and is parsed once per distinct schedule.
        cast(Prescription.times, Text),
        cast(Prescription.start_date, Text),
        cast(Prescription.end_date, Text),
        type_coerce(Prescription.stopped_at, String),
        Prescription.stay_id,
        Prescription.drug,
        Prescription.dose,
    ).where(
        Prescription.portal_id == portal.id,
        Prescription.start_date <= end.date() + timedelta(days=1),
        (Prescription.end_date.is_(None)) | (Prescription.end_date >= start.date() - timedelta(days=1)),
    )
    # The stays in progress (and in the building) first: a prescription of anyone else is skipped below,
    # cheaper than joining every prescription row to its stay.
    stays_query = (
        select(
            InpatientStay.id, InpatientStay.deal_id, InpatientStay.building_id, InpatientStay.bed, Ward.name
        )
        .join(Ward, Ward.id == InpatientStay.ward_id)
        .where(InpatientStay.portal_id == portal.id, InpatientStay.status != "discharged")
    )
    if building_id is not None:
        stays_query = stays_query.where(InpatientStay.building_id == building_id)
        query = query.where(
            Prescription.stay_id.in_(
                select(InpatientStay.id).where(
                    InpatientStay.portal_id == portal.id, InpatientStay.building_id == building_id
                )
            )
        )
    # Core execution, not the ORM's: plain rows, none of the ORM's per-row loading machinery; the raw
    # (times, from, to) text is the schedule's key, parsed once per distinct schedule, not per row.
    connection = session.connection()
    stays = {row[0]: row for row in _plain_rows(connection, stays_query)}
    rows = _plain_rows(connection, query)
    schedules = _Schedules(portal.timezone, start, end)
    known = schedules.known
    slots: list[tuple[int, datetime]] = []
    extend = slots.extend
    for prescription_id, times, first, last, stopped, stay_id, _drug, _dose in rows:
        if stay_id not in stays:
            continue
        # The schedule's raw text is its key (JSON text on both databases once cast; a decoded list
        # from a driver that decodes anyway is made hashable).
        key = (times, first, last) if isinstance(times, str) else (tuple(times), first, last)
        dues = known.get(key)
        if dues is None:
            dues = known[key] = schedules.dues(tuple(_json(times)), _day(first), _day(last))  # type: ignore[arg-type]
        if not dues:
            continue
        if stopped is None:
            extend(zip(repeat(prescription_id), dues))
        else:
            cut = _instant(stopped)
            extend((prescription_id, due) for due in dues if due < cut)  # type: ignore[operator]
    if not slots:
        return []
    marked = _marked(session, portal, start, end)
    slots = [slot for slot in slots if slot not in marked]
    if not slots:
        return []
    # Oldest first; at the same instant in prescription order, whatever order the database returned.
    slots.sort(key=itemgetter(1, 0))
    prescription = {row[0]: row for row in rows}
    overdue_before = at - timedelta(minutes=settings.overdue_after_min)
    stamps: dict[datetime, str] = {}
    out: list[DueRound] = []
    for prescription_id, due in slots:
        stamp = stamps.get(due)
        if stamp is None:
            stamp = stamps[due] = f"{due.astimezone(UTC):%Y%m%dT%H%M}Z"
        row = prescription[prescription_id]
        stay_id, drug, dose = row[5], row[6], row[7]
        _sid, deal_id, building, bed, ward = stays[stay_id]
        out.append(
            {
                "round_id": f"{prescription_id}-{stamp}",
                "prescription_id": prescription_id,
                "stay_id": stay_id,
                "deal_id": deal_id,
                "building_id": building,
                "ward": ward,
                "bed": bed,
                "drug": drug,
                "dose": dose,
                "due_at": due,
                "overdue": due <= overdue_before,
            }
        )
    return out


def _marked(session: Session, portal: Portal, start: datetime, end: datetime) -> set[tuple[int, datetime]]:
    """(prescription, due instant) of the window's records. Not narrowed by building: the caller only asks
    about its own prescriptions, and a join here made PostgreSQL's plan far slower than the extra rows."""
    query = select(RoundRecord.prescription_id, type_coerce(RoundRecord.due_at, String)).where(
        RoundRecord.portal_id == portal.id,
        RoundRecord.due_at >= start,
        RoundRecord.due_at <= end,
        RoundRecord.corrects_id.is_(None),
    )
    instants: dict[object, datetime] = {}
    marked: set[tuple[int, datetime]] = set()
    for pid, raw in _plain_rows(session.connection(), query):
        due = instants.get(raw)
        if due is None:
            due = instants[raw] = _instant(raw)  # type: ignore[assignment]
        marked.add((pid, due))  # type: ignore[arg-type]
    return marked


def _dose_of(session: Session, portal: Portal, value: str) -> tuple[Prescription, InpatientStay, datetime]:
    prescription_id, due_at = parse_round_id(value)
    prescription = session.get(Prescription, prescription_id)
    if prescription is None or prescription.portal_id != portal.id:
        raise InpatientNotFound("round_id", f"no prescription {prescription_id} in this portal")
    scheduled = slots_between(
        [ScheduledDose(prescription.id, tuple(prescription.times), prescription.start_date,
                       prescription.end_date, prescription.stopped_at)],
        portal.timezone, due_at, due_at,
    )  # fmt: skip
    if not scheduled:
        raise InpatientNotFound("round_id", f"{prescription.drug} is not scheduled at that time")
    stay = session.get(InpatientStay, prescription.stay_id)
    assert stay is not None
    return prescription, stay, due_at


def record_round(
    session: Session,
    portal: Portal,
    value: str,
    outcome: str,
    reason: str | None,
    note: str | None,
    corrects: int | None,
    actor: Actor,
) -> RoundRecord:
    """Mark a dose. A second mark of the same dose must say which record it corrects (the latest one);
    earlier records are never changed."""
    prescription, stay, due_at = _dose_of(session, portal, value)
    if stay.status == "discharged":
        raise InpatientConflict("round_id", "the patient is discharged")
    settings = inpatient_settings(portal)
    if due_at > utcnow() + timedelta(minutes=settings.due_ahead_min):
        raise InpatientError("round_id", "this dose is not due yet")
    if outcome == "not_given":
        if reason not in REASONS:
            raise InpatientError("reason", f"must be one of {', '.join(REASONS)}")
    elif reason is not None:
        raise InpatientError("reason", "only a dose not given has a reason")
    latest = _latest(session, prescription.id, due_at)
    if latest is not None and corrects is None:
        raise InpatientConflict(
            "round_id",
            f"already marked {latest.outcome} by {latest.actor} (record {latest.id}); "
            f"send corrects={latest.id} to correct it",
        )
    if corrects is not None and (latest is None or latest.id != corrects):
        raise InpatientConflict(
            "corrects", f"correct the latest record of this dose ({latest.id if latest else 'none yet'})"
        )
    step = NEXT_STEPS[REASONS[reason].next_step] if reason else None
    record = RoundRecord(
        portal_id=portal.id,
        stay_id=stay.id,
        prescription_id=prescription.id,
        due_at=due_at,
        outcome=outcome,
        reason=reason,
        note=(note or "").strip() or None,
        next_step=step.code if step else None,
        corrects_id=corrects,
        actor=actor.label,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise InpatientConflict("round_id", "someone marked this dose a moment ago; reload") from None
    _mirror_round(session, portal, stay, prescription, record)
    return record


def _latest(session: Session, prescription_id: int, due_at: datetime) -> RoundRecord | None:
    records = session.scalars(
        select(RoundRecord)
        .where(RoundRecord.prescription_id == prescription_id, RoundRecord.due_at == due_at)
        .order_by(RoundRecord.id)
    ).all()
    corrected = {r.corrects_id for r in records}
    uncorrected = [r for r in records if r.id not in corrected]
    return uncorrected[-1] if uncorrected else None


def _local(portal: Portal, moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(portal.timezone)).strftime("%d.%m.%Y %H:%M")


def _mirror_round(
    session: Session, portal: Portal, stay: InpatientStay, prescription: Prescription, record: RoundRecord
) -> None:
    """A missed dose is never silent: a note in the feed and the next step as a task for its role. A dose
    given on time needs no note; a correction always gets one."""
    dose = f"{prescription.drug} {prescription.dose} в {_local(portal, record.due_at)}"
    prefix = "Исправление: " if record.corrects_id else ""
    if record.outcome == "given":
        if record.corrects_id:
            queue_note(session, portal, stay.deal_id, f"{prefix}приём {dose} выдан", f"round:{record.id}")
        return
    reason = REASONS[record.reason or ""]
    step = NEXT_STEPS[reason.next_step]
    building = session.get(Building, stay.building_id)
    assert building is not None
    user_id = task_user(step.role, building, prescription.doctor_user_id)
    text = step.task_ru.format(drug=prescription.drug, dose=prescription.dose, reason=reason.title_ru.lower())
    queue_task(session, portal, stay.deal_id, text, f"round:{record.id}", user_id=user_id,
               due=utcnow() + timedelta(hours=2))  # fmt: skip
    comment = f" ({record.note})" if record.note else ""
    queue_note(
        session,
        portal,
        stay.deal_id,
        f"{prefix}приём {dose} не выдан: {reason.title_ru.lower()}{comment}. Следующий шаг: {step.title_ru}",
        f"round:{record.id}",
    )


def escalate_overdue(session: Session, portal: Portal, now: datetime) -> int:
    """For each dose overdue and still unmarked, exactly once: a task for the building's nurses and the
    escalation to the building manager (the unique escalation row is written in the same transaction as
    the tasks' outbox rows)."""
    settings = inpatient_settings(portal)
    cutoff = now - timedelta(minutes=settings.overdue_after_min)
    overdue = [r for r in due_rounds(session, portal, now, ahead_min=0) if r["due_at"] <= cutoff]
    if not overdue:
        return 0
    done = {
        (pid, due)
        for pid, due in session.execute(
            select(RoundEscalation.prescription_id, RoundEscalation.due_at).where(
                RoundEscalation.portal_id == portal.id,
                RoundEscalation.prescription_id.in_({r["prescription_id"] for r in overdue}),
            )
        )
    }
    buildings = {b.id: b for b in session.scalars(select(Building).where(Building.portal_id == portal.id))}
    count = 0
    for item in overdue:
        if (item["prescription_id"], item["due_at"]) in done:
            continue
        escalation = RoundEscalation(
            portal_id=portal.id, prescription_id=item["prescription_id"], due_at=item["due_at"]
        )
        try:
            with session.begin_nested():
                session.add(escalation)
        except IntegrityError:
            continue  # a concurrent sweep took it
        building = buildings[item["building_id"]]
        where = (
            f"{item['drug']} {item['dose']} в {_local(portal, item['due_at'])} "
            f"(палата {item['ward']}, место {item['bed']})"
        )
        if building.nurse_user_id:
            # The nurses get the overdue dose as a CRM task too: the panel is not always open.
            queue_task(
                session,
                portal,
                item["deal_id"],
                f"Отметьте приём: {where} — выдан или почему нет",
                f"escalation:{escalation.id}:nurse",
                user_id=building.nurse_user_id,
                due=now + timedelta(minutes=15),
            )
        queue_task(
            session,
            portal,
            item["deal_id"],
            f"Просрочен приём: {where} не отмечен",
            f"escalation:{escalation.id}",
            user_id=building.manager_user_id,
            due=now + timedelta(minutes=30),
        )
        count += 1
    return count
