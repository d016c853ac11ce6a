"""Who is on shift at an instant: weekly patterns (5/2 with hours), cyclic N/M patterns (2/2 from an
anchor date), calendar entries and absences, combined with the operator's self-service status according
to the portal's `shift_mode` (schedule | manual | hybrid).

Hours are wall-clock times in the shift's timezone. Each interval is built from local dates with
zoneinfo and compared in UTC, so a night shift crossing midnight, or a day on which the clocks change,
lasts exactly what the clinic's wall clock says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "SHIFT_MODES",
    "ShiftSpec",
    "StatusView",
    "effective_status",
    "in_window",
    "parse_hhmm",
    "scheduled_interval",
]

SHIFT_MODES = ("schedule", "manual", "hybrid")


@dataclass(frozen=True)
class ShiftSpec:
    kind: str  # weekly | cyclic | entry | absence
    spec: Mapping[str, Any]
    starts_at: datetime | None = None
    ends_at: datetime | None = None


@dataclass(frozen=True)
class StatusView:
    """The operator's self-service status row, as the resolver needs it."""

    state: str = "off"  # on_shift | paused | off
    since: datetime | None = None
    paused_until: datetime | None = None
    last_seen_at: datetime | None = None


def parse_hhmm(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


def _local_interval(day: date, start: str, end: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    begin = datetime.combine(day, parse_hhmm(start), tz)
    finish_day = day if parse_hhmm(end) > parse_hhmm(start) else day + timedelta(days=1)
    finish = datetime.combine(finish_day, parse_hhmm(end), tz)
    return begin.astimezone(UTC), finish.astimezone(UTC)


def _works_on(shift: ShiftSpec, day: date) -> bool:
    if shift.kind == "weekly":
        return day.isoweekday() in shift.spec.get("days", ())
    if shift.kind == "cyclic":
        on, off = int(shift.spec["on_days"]), int(shift.spec["off_days"])
        offset = (day - date.fromisoformat(shift.spec["anchor"])).days
        return offset >= 0 and offset % (on + off) < on
    return False


def scheduled_interval(
    shifts: Iterable[ShiftSpec], at: datetime, default_tz: str
) -> tuple[datetime, datetime] | None:
    """The scheduled interval containing `at`, or None. A pattern's interval belongs to the day it starts
    on, so yesterday's night shift is looked at too."""
    for shift in shifts:
        if shift.kind == "entry":
            if shift.starts_at and shift.ends_at and shift.starts_at <= at < shift.ends_at:
                return shift.starts_at, shift.ends_at
            continue
        if shift.kind not in ("weekly", "cyclic"):
            continue
        tz = ZoneInfo(shift.spec.get("timezone") or default_tz)
        today = at.astimezone(tz).date()
        for day in (today - timedelta(days=1), today):
            if not _works_on(shift, day):
                continue
            begin, finish = _local_interval(day, shift.spec["start"], shift.spec["end"], tz)
            if begin <= at < finish:
                return begin, finish
    return None


def absent(shifts: Iterable[ShiftSpec], at: datetime) -> bool:
    return any(
        s.kind == "absence"
        and s.starts_at is not None
        and s.starts_at <= at
        and (s.ends_at is None or at < s.ends_at)
        for s in shifts
    )


def effective_status(
    mode: str,
    shifts: Iterable[ShiftSpec],
    status: StatusView,
    at: datetime,
    *,
    default_tz: str,
    auto_off_minutes: int = 30,
) -> str:
    """on_shift | paused | off | absent for distribution purposes at `at`."""
    shifts = list(shifts)
    if shifts and absent(shifts, at):
        return "absent"
    if status.state == "paused" and (status.paused_until is None or status.paused_until > at):
        return "paused"
    manual_on = status.state in ("on_shift", "paused")  # a pause that ran out resumes the shift
    if manual_on and mode != "schedule":
        seen = max(filter(None, (status.since, status.last_seen_at, status.paused_until)), default=None)
        if seen is not None and at - seen > timedelta(minutes=auto_off_minutes):
            # Nobody heard from them for auto_off_minutes: a forgotten "end of day" must not draw leads.
            manual_on = False
    if mode == "manual":
        return "on_shift" if manual_on else "off"
    interval = scheduled_interval(shifts, at, default_tz) if shifts else None
    if mode == "schedule":
        return "on_shift" if interval is not None else "off"
    # hybrid: a self-started shift counts; a scheduled one counts unless the operator ended it during it.
    if manual_on:
        return "on_shift"
    if interval is not None:
        ended_now = status.state == "off" and status.since is not None and status.since >= interval[0]
        return "off" if ended_now else "on_shift"
    return "off"


def in_window(window: Mapping[str, Any] | None, at: datetime, tz: str) -> bool:
    """Inside the rule's window: `days` (ISO weekdays of the window's start) and from–to, which may
    cross midnight. No window: always open."""
    if not window:
        return True
    zone = ZoneInfo(tz)
    today = at.astimezone(zone).date()
    days = window.get("days") or [1, 2, 3, 4, 5, 6, 7]
    for day in (today - timedelta(days=1), today):
        if day.isoweekday() not in days:
            continue
        begin, finish = _local_interval(day, window.get("from", "00:00"), window.get("to", "00:00"), zone)
        if begin <= at < finish:
            return True
    return False
