"""Worked and scheduled minutes per local day, from the operators' own «Начать/Завершить рабочий день»
(OperatorStatusEvent: on_shift starts or resumes, paused stops the clock, off ends the day) and the monthly
calendar «Рабочие графики» (OperatorShift entries).

Every interval is cut at the clinic's local midnights, so a night shift pays its hours to the days they
were worked in, and a month gets exactly the minutes inside it. A shift that has not been ended is listed
as open and counts nothing: we never guess when someone went home.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DayMinutes", "LateStart", "Shift", "late_starts", "minutes_by_day", "shifts_from_events"]


@dataclass
class Shift:
    """From a start to its end, with the paused minutes left out; `ended_at` None = still open."""

    started_at: datetime
    ended_at: datetime | None = None
    segments: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def minutes(self) -> int:
        return sum(_minutes(a, b) for a, b in self.segments)


@dataclass(frozen=True)
class LateStart:
    day: date
    scheduled_start: datetime
    started_at: datetime | None
    minutes_late: int | None


@dataclass
class DayMinutes:
    scheduled: int = 0
    worked: int = 0


def _minutes(a: datetime, b: datetime) -> int:
    # Exact minutes: seconds are floored once per interval, never rounded up into pay.
    return int((b - a).total_seconds() // 60)


def shifts_from_events(events: Iterable[tuple[datetime, str]]) -> list[Shift]:
    """(at, state) in time order → the working days they describe."""
    shifts: list[Shift] = []
    current: Shift | None = None
    running_since: datetime | None = None
    for at, state in events:
        if state == "on_shift":
            if current is None:
                current = Shift(at)
                shifts.append(current)
            if running_since is None:
                running_since = at
        elif current is not None:
            if running_since is not None:
                current.segments.append((running_since, at))
                running_since = None
            if state == "off":
                current.ended_at = at
                current = None
    return shifts


def _split_local_days(begin: datetime, end: datetime, zone: ZoneInfo) -> Iterable[tuple[date, int]]:
    """(local day, seconds) pieces of [begin, end)."""
    cursor = begin
    while cursor < end:
        day = cursor.astimezone(zone).date()
        midnight = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
        stop = min(end, midnight)
        yield day, int((stop - cursor).total_seconds())
        cursor = stop


def minutes_by_day(
    shifts: Iterable[Shift],
    scheduled: Iterable[tuple[datetime, datetime]],
    zone: ZoneInfo,
    first: date,
    last: date,
) -> dict[date, DayMinutes]:
    """Local day → scheduled and worked minutes (seconds summed per day, then floored to whole minutes),
    for days first…last only; open shifts count nothing."""
    worked: dict[date, int] = {}
    planned: dict[date, int] = {}
    for shift in shifts:
        if shift.ended_at is None:
            continue
        for a, b in shift.segments:
            for day, seconds in _split_local_days(a, b, zone):
                worked[day] = worked.get(day, 0) + seconds
    for a, b in scheduled:
        for day, seconds in _split_local_days(a, b, zone):
            planned[day] = planned.get(day, 0) + seconds
    return {
        day: DayMinutes(planned.get(day, 0) // 60, worked.get(day, 0) // 60)
        for day in sorted({*worked, *planned})
        if first <= day <= last
    }


def late_starts(
    shifts: Iterable[Shift], scheduled: Iterable[tuple[datetime, datetime]], zone: ZoneInfo
) -> list[LateStart]:
    """Each scheduled interval whose first start came after its beginning (or never came)."""
    starts = sorted(s.started_at for s in shifts)
    late: list[LateStart] = []
    for begin, end in sorted(scheduled):
        # The start that belongs to this interval: the first one from two hours before it until its end.
        first = next((s for s in starts if begin - timedelta(hours=2) <= s < end), None)
        if first is None:
            late.append(LateStart(begin.astimezone(zone).date(), begin, None, None))
        elif first > begin:
            late.append(LateStart(begin.astimezone(zone).date(), begin, first, _minutes(begin, first)))
    return late
