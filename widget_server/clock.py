"""Time as the clinic sees it: the portal's timezone decides what "today" is."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

__all__ = ["local_today", "now_utc"]


def now_utc() -> datetime:
    return datetime.now(UTC)


def local_today(timezone: str, now: datetime | None = None) -> date:
    """The calendar day in `timezone` at `now` (default: this instant). A clinic in Novosibirsk starts its
    day four hours before one in Moscow, so "today" is never the server's date."""
    moment = now or now_utc()
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(ZoneInfo(timezone)).date()
