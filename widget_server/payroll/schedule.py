"""«Рабочие графики» as patterns: a weekly pattern (Mon–Fri 09:00–18:00) or a cycle (2/2, 1/3 from an anchor
date), effective-dated per operator, with single-day overrides (a holiday off, a short day), expanded to
a month's scheduled intervals in the clinic's timezone.

A day's schedule is, first match wins: the HR calendar's entries starting that local day (the monthly
calendar stays the most specific word), the pattern's override for the date, the pattern itself. Hours are
wall-clock times turned into instants with zoneinfo day by day, so a day of a clock change lasts what the
wall clock says and a night shift (22:00–06:00) ends on the next morning. Recurrence comes from
dateutil's rrule over local dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, WEEKLY, rrule
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import OperatorShift, Portal
from ..models.payroll import PAYROLL_SCHEDULE_KINDS, PayrollSchedule
from .rates import PayrollInvalid, dated_entries, dated_row

__all__ = ["ScheduleInput", "save_schedules", "schedule_document", "scheduled_by_user", "scheduled_intervals"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class ScheduleInput:
    user_id: int
    effective_from: date
    kind: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    overrides: Sequence[Mapping[str, Any]] = ()


def _hhmm(value: object, where: str) -> str:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise PayrollInvalid(where, f"must be a time HH:MM, got {value!r}")
    return value


def _hours(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    start = _hhmm(raw.get("start"), f"{where}.start")
    end = _hhmm(raw.get("end"), f"{where}.end")
    if start == end:
        raise PayrollInvalid(f"{where}.end", "must differ from start (an end before it ends the next day)")
    return {"start": start, "end": end}


def _count(raw: object, where: str, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= 31:
        raise PayrollInvalid(where, f"must be a whole number of days from {low} to 31")
    return raw


def _iso_date(raw: object, where: str) -> date:
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str) and len(raw) == 10:  # fromisoformat would also take 20260301
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise PayrollInvalid(where, f"must be a date YYYY-MM-DD, got {raw!r}")


def _clean_spec(entry: ScheduleInput, where: str) -> dict[str, Any]:
    spec = entry.spec
    if entry.kind == "calendar":
        return {}
    if entry.kind == "weekly":
        days = spec.get("days")
        if (
            not isinstance(days, list)
            or not days
            or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in days)
            or len(set(days)) != len(days)
        ):
            raise PayrollInvalid(f"{where}.days", "must list distinct ISO weekdays 1 (Mon) … 7 (Sun)")
        return {"days": sorted(days), **_hours(spec, where)}
    on = _count(spec.get("on_days"), f"{where}.on_days", 1)
    off = _count(spec.get("off_days"), f"{where}.off_days", 1)
    anchor = _iso_date(spec.get("anchor"), f"{where}.anchor")
    return {"on_days": on, "off_days": off, "anchor": anchor.isoformat(), **_hours(spec, where)}


def _clean_overrides(entry: ScheduleInput, where: str) -> list[dict[str, Any]]:
    clean: list[dict[str, Any]] = []
    seen: set[date] = set()
    for index, raw in enumerate(entry.overrides):
        at = f"{where}.overrides[{index}]"
        day = _iso_date(raw.get("date"), f"{at}.date")
        if day < entry.effective_from:
            raise PayrollInvalid(f"{at}.date", f"before the schedule's effective_from {entry.effective_from}")
        if day in seen:
            raise PayrollInvalid(f"{at}.date", f"a second override for {day}")
        seen.add(day)
        item: dict[str, Any] = {"date": day.isoformat()}
        if raw.get("start") is not None or raw.get("end") is not None:
            item.update(_hours(raw, at))
        if raw.get("reason"):
            item["reason"] = str(raw["reason"])[:200]
        clean.append(item)
    return sorted(clean, key=lambda item: item["date"])


def save_schedules(
    session: Session,
    portal: Portal,
    entries: Iterable[ScheduleInput],
    *,
    actor: str,
    prefix: str = "schedules",
) -> list[PayrollSchedule]:
    """Validate every entry first (the first bad one names its field, nothing is written), then upsert by
    (operator, effective_from)."""
    clean: list[tuple[ScheduleInput, dict[str, Any], list[dict[str, Any]]]] = []
    for where, entry in dated_entries(session, portal, list(entries), prefix):
        if entry.kind not in PAYROLL_SCHEDULE_KINDS:
            raise PayrollInvalid(f"{where}.kind", f"must be one of {', '.join(PAYROLL_SCHEDULE_KINDS)}")
        clean.append((entry, _clean_spec(entry, where), _clean_overrides(entry, where)))
    saved: list[PayrollSchedule] = []
    for entry, spec, overrides in clean:
        row = dated_row(session, PayrollSchedule, portal.id, entry)
        row.kind, row.spec, row.overrides, row.created_by = entry.kind, spec, overrides, actor
        saved.append(row)
    session.flush()
    return saved


def schedule_document(row: PayrollSchedule) -> dict[str, Any]:
    return {
        "user_id": row.user_id, "effective_from": row.effective_from.isoformat(), "kind": row.kind,
        **row.spec, "overrides": row.overrides,
    }  # fmt: skip


def _interval(day: date, start: str, end: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    begin = datetime.combine(day, time.fromisoformat(start), zone)
    finish_day = day if end > start else day + timedelta(days=1)
    finish = datetime.combine(finish_day, time.fromisoformat(end), zone)
    return begin.astimezone(UTC), finish.astimezone(UTC)


def _pattern_days(row: PayrollSchedule, since: date, until: date) -> Iterable[date]:
    spec = row.spec
    stop = datetime.combine(until, time())
    if row.kind == "weekly":
        days = [d - 1 for d in spec["days"]]  # rrule's weekdays count from Monday = 0
        weeks = rrule(WEEKLY, byweekday=days, dtstart=datetime.combine(since, time()), until=stop)
        return [d.date() for d in weeks]
    # A cycle of on + off days from the anchor: each working day of the cycle recurs every on + off days.
    anchor = date.fromisoformat(spec["anchor"])
    length = spec["on_days"] + spec["off_days"]
    skip = max(0, (since - anchor).days // length) * length  # start at the cycle containing `since`
    found: list[date] = []
    for offset in range(spec["on_days"]):
        start = datetime.combine(anchor + timedelta(days=skip + offset), time())
        days = rrule(DAILY, interval=length, dtstart=start, until=stop)
        found.extend(d.date() for d in days if d.date() >= since)
    return sorted(found)


def scheduled_intervals(
    rows: Iterable[PayrollSchedule],
    calendar: Iterable[tuple[datetime, datetime]],
    zone: ZoneInfo,
    first: date,
    last: date,
) -> list[tuple[datetime, datetime]]:
    """The scheduled [begin, end) instants of the local days first…last: the calendar's entries, and for
    days without one the pattern in force that day (its override for the date first)."""
    intervals = sorted(calendar)
    calendar_days = {begin.astimezone(zone).date() for begin, _ in intervals}
    history = sorted(rows, key=lambda row: row.effective_from)
    for index, row in enumerate(history):
        since = max(first, row.effective_from)
        following = history[index + 1].effective_from if index + 1 < len(history) else None
        until = last if following is None else min(last, following - timedelta(days=1))
        if since > until or row.kind == "calendar":
            continue
        overrides = {date.fromisoformat(o["date"]): o for o in row.overrides or []}
        for day in _pattern_days(row, since, until):
            if day not in calendar_days and day not in overrides:
                intervals.append(_interval(day, row.spec["start"], row.spec["end"], zone))
        for day, override in overrides.items():
            if since <= day <= until and day not in calendar_days and "start" in override:
                intervals.append(_interval(day, override["start"], override["end"], zone))
    return sorted(intervals)


def scheduled_by_user(
    session: Session, portal_id: int, user_ids: list[int], zone: ZoneInfo, first: date, last: date
) -> dict[int, list[tuple[datetime, datetime]]]:
    """Operator → the scheduled intervals of the local days from the eve of the month (whose night shift
    runs into the 1st) to its last day: calendar entries, else their pattern."""
    eve = first - timedelta(days=1)
    begin = datetime.combine(eve, datetime.min.time(), zone)
    finish = datetime.combine(last + timedelta(days=2), datetime.min.time(), zone)
    calendar: dict[int, list[tuple[datetime, datetime]]] = {uid: [] for uid in user_ids}
    for uid, starts_at, ends_at in session.execute(
        select(OperatorShift.user_id, OperatorShift.starts_at, OperatorShift.ends_at).where(
            OperatorShift.portal_id == portal_id,
            OperatorShift.user_id.in_(user_ids),
            OperatorShift.kind == "entry",
            OperatorShift.starts_at < finish,
            OperatorShift.ends_at > begin,
        )
    ):
        calendar[uid].append((starts_at, ends_at))
    patterns: dict[int, list[PayrollSchedule]] = {uid: [] for uid in user_ids}
    for row in session.scalars(
        select(PayrollSchedule).where(
            PayrollSchedule.portal_id == portal_id,
            PayrollSchedule.user_id.in_(user_ids),
            PayrollSchedule.effective_from <= last,
        )
    ):
        patterns[row.user_id].append(row)
    return {uid: scheduled_intervals(patterns[uid], calendar[uid], zone, eve, last) for uid in user_ids}
