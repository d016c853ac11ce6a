"""Report periods: local calendar days of the portal, grouped by day, ISO week or month.

A period is inclusive of both ends and at most 731 days (two years, one of them leap): longer ranges are
refused rather than silently truncated, so a chart never shows less than was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..errors import DomainError

__all__ = ["GROUPS", "MAX_DAYS", "Period", "ReportInvalid", "add_months", "bucket_of", "make_period"]

GROUPS = ("day", "week", "month")
MAX_DAYS = 731


class ReportInvalid(DomainError):
    code = "validation_failed"


def add_months(day: date, months: int) -> date:
    """The same day `months` later; the 31st of a shorter month becomes its last day (31.08 + 6 → 28.02)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def bucket_of(day: date, group: str) -> str:
    if group == "day":
        return day.isoformat()
    if group == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    group: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[first local midnight, the midnight after the last day) in UTC."""
        zone = self.zone
        begin = datetime.combine(self.start, time(0), zone).astimezone(UTC)
        finish = datetime.combine(self.end + timedelta(days=1), time(0), zone).astimezone(UTC)
        return begin, finish

    def buckets(self) -> list[str]:
        seen: dict[str, None] = {}
        day = self.start
        while day <= self.end:
            seen.setdefault(bucket_of(day, self.group))
            day += timedelta(days=1)
        return list(seen)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()


def make_period(start: date, end: date, group: str, timezone: str) -> Period:
    if start > end:
        raise ReportInvalid("from", f"must not be after to ({start.isoformat()} > {end.isoformat()})")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise ReportInvalid("to", f"the period is {days} days; at most {MAX_DAYS}")
    if group not in GROUPS:
        raise ReportInvalid("group", f"must be one of {', '.join(GROUPS)}")
    return Period(start, end, group, timezone)
